"""Messages, wire format, channels and byte/time accounting. Knows roles, not models or data."""

from securevfl.protocols.accounting import PhaseTimer, TrafficStats
from securevfl.protocols.channel import Channel, ChannelEndpoint, InProcessChannel, Server
from securevfl.protocols.codecs import CodecRegistry, NdarrayCodec, PayloadCodec
from securevfl.protocols.errors import NonFiniteError, PayloadRangeError, ProtocolError, WireFormatError
from securevfl.protocols.messages import ACTIVATION, EVAL_ACTIVATION, GRADIENT, Message, MessageKind
from securevfl.protocols.phases import PHASE_GROUPS, CostGroup, Phase, cost_summary
from securevfl.protocols.wire import WIRE_VERSION, decode_message, encode_message

__all__ = [
    "ACTIVATION",
    "EVAL_ACTIVATION",
    "GRADIENT",
    "WIRE_VERSION",
    "Channel",
    "ChannelEndpoint",
    "CodecRegistry",
    "InProcessChannel",
    "Message",
    "MessageKind",
    "PHASE_GROUPS",
    "CostGroup",
    "Phase",
    "cost_summary",
    "NdarrayCodec",
    "NonFiniteError",
    "PayloadRangeError",
    "PayloadCodec",
    "PhaseTimer",
    "Server",
    "ProtocolError",
    "TrafficStats",
    "WireFormatError",
    "decode_message",
    "encode_message",
]
