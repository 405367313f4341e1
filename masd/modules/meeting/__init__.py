"""The meeting module (会信通): notices, SMS replies, escalation by a second SMS and a call, the board."""
