from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SignRequest(_message.Message):
    __slots__ = ("csr_pem", "ttl_seconds")
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    csr_pem: str
    ttl_seconds: int
    def __init__(self, csr_pem: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class SignResponse(_message.Message):
    __slots__ = ("cert_chain_pem", "root_cert_pem", "spiffe_id")
    CERT_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    ROOT_CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    cert_chain_pem: _containers.RepeatedScalarFieldContainer[str]
    root_cert_pem: str
    spiffe_id: str
    def __init__(self, cert_chain_pem: _Optional[_Iterable[str]] = ..., root_cert_pem: _Optional[str] = ..., spiffe_id: _Optional[str] = ...) -> None: ...
