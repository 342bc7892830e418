from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Event(_message.Message):
    __slots__ = ("event_id", "user_id", "merchant_id", "amount", "currency", "country", "device", "ts", "is_fraud")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    IS_FRAUD_FIELD_NUMBER: _ClassVar[int]
    event_id: int
    user_id: int
    merchant_id: int
    amount: float
    currency: str
    country: str
    device: str
    ts: int
    is_fraud: bool
    def __init__(self, event_id: _Optional[int] = ..., user_id: _Optional[int] = ..., merchant_id: _Optional[int] = ..., amount: _Optional[float] = ..., currency: _Optional[str] = ..., country: _Optional[str] = ..., device: _Optional[str] = ..., ts: _Optional[int] = ..., is_fraud: _Optional[bool] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("events", "sent_at_us")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_US_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    sent_at_us: int
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., sent_at_us: _Optional[int] = ...) -> None: ...

class Rejected(_message.Message):
    __slots__ = ("index", "field", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    field: str
    reason: str
    def __init__(self, index: _Optional[int] = ..., field: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class IngestReply(_message.Message):
    __slots__ = ("accepted", "rejections", "rejected", "rejections_omitted")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_OMITTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    rejections: _containers.RepeatedCompositeFieldContainer[Rejected]
    rejected: int
    rejections_omitted: int
    def __init__(self, accepted: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[Rejected, _Mapping]]] = ..., rejected: _Optional[int] = ..., rejections_omitted: _Optional[int] = ...) -> None: ...
