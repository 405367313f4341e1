"""SMGP 3.0 (China Telecom's SMGW protocol): numbers, the PDU codec with its TLVs, and the BCD MsgID."""
