//! RAW transport state machines: negotiation, handshake, SEND/RECEIVE transactions.
