"""SGIP 1.2 (China Unicom's SMG protocol): numbers, the 12-octet Sequence Number and the PDU codec."""
