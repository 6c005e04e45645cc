"""Messages, signed wire frames, channels and byte/time accounting. Knows roles, not models or data."""

from securevfl.protocols.accounting import PhaseTimer, TrafficStats
from securevfl.protocols.channel import Channel, ChannelEndpoint, FrameRefusal, InProcessChannel, Interceptor, Server
from securevfl.protocols.codecs import CodecRegistry, NdarrayCodec, PayloadCodec
from securevfl.protocols.errors import (
    FrameAuthenticationError,
    IdentityError,
    NonFiniteError,
    PayloadRangeError,
    ProtocolError,
    WireFormatError,
)
from securevfl.protocols.framing import FrameSigner, FrameVerifier, new_session_id
from securevfl.protocols.identity import Identity, Roster, fingerprint, fresh_identities
from securevfl.protocols.messages import ACTIVATION, EVAL_ACTIVATION, GRADIENT, Message, MessageKind
from securevfl.protocols.phases import PHASE_GROUPS, CostGroup, Phase, cost_summary
from securevfl.protocols.wire import WIRE_VERSION, decode_message, parse_frame, peek_route

__all__ = [
    "ACTIVATION",
    "EVAL_ACTIVATION",
    "GRADIENT",
    "WIRE_VERSION",
    "Channel",
    "ChannelEndpoint",
    "CodecRegistry",
    "FrameAuthenticationError",
    "FrameRefusal",
    "FrameSigner",
    "FrameVerifier",
    "Identity",
    "IdentityError",
    "InProcessChannel",
    "Interceptor",
    "Message",
    "MessageKind",
    "PHASE_GROUPS",
    "CostGroup",
    "Phase",
    "cost_summary",
    "decode_message",
    "NdarrayCodec",
    "NonFiniteError",
    "PayloadRangeError",
    "PayloadCodec",
    "PhaseTimer",
    "Roster",
    "Server",
    "ProtocolError",
    "TrafficStats",
    "WireFormatError",
    "fingerprint",
    "fresh_identities",
    "new_session_id",
    "parse_frame",
    "peek_route",
]
