"""CMPP 2.0 and 3.0 (China Mobile's ISMG protocol): numbers, the PDU codec, Msg_Id and message text."""
