"""SMPP 3.4: PDU framing, status codes, receipts, replies, the client driver and a simulated SMSC."""
