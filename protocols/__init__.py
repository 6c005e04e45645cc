"""Messages, wire format, channels and byte/time accounting. Knows roles, not models or data."""

from protocols.accounting import PhaseTimer, TrafficStats
from protocols.channel import Channel, InProcessChannel
from protocols.codecs import CodecRegistry, NdarrayCodec, PayloadCodec
from protocols.errors import NonFiniteError, ProtocolError, WireFormatError
from protocols.messages import ACTIVATION, EVAL_ACTIVATION, GRADIENT, Message
from protocols.wire import WIRE_VERSION, decode_message, encode_message

__all__ = [
    "ACTIVATION",
    "EVAL_ACTIVATION",
    "GRADIENT",
    "WIRE_VERSION",
    "Channel",
    "CodecRegistry",
    "InProcessChannel",
    "Message",
    "NdarrayCodec",
    "NonFiniteError",
    "PayloadCodec",
    "PhaseTimer",
    "ProtocolError",
    "TrafficStats",
    "WireFormatError",
    "decode_message",
    "encode_message",
]
