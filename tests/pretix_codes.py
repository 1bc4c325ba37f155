"""pretix_sig1 ticket codes as pretix prints them, for the tests (pretix's protobuf message built with the
real protobuf runtime)."""

import base64
import struct


def pretix_message():
    """pretix's Ticket protobuf message, built with the real protobuf runtime."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    fd = descriptor_pb2.FileDescriptorProto(name="pretix_sig1.proto", syntax="proto3")
    m = fd.message_type.add(name="Ticket")
    F = descriptor_pb2.FieldDescriptorProto
    for name, num, typ, opt in (("seed", 1, F.TYPE_STRING, False), ("item", 2, F.TYPE_INT64, False),
                                ("variation", 3, F.TYPE_INT64, False), ("subevent", 4, F.TYPE_INT64, False),
                                ("validFromUnixTime", 5, F.TYPE_INT64, True),
                                ("validUntilUnixTime", 6, F.TYPE_INT64, True)):
        f = m.field.add(name=name, number=num, type=typ, label=F.LABEL_OPTIONAL)
        if opt:
            f.proto3_optional = True
            f.oneof_index = len(m.oneof_decl)
            m.oneof_decl.add(name="_" + name)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("Ticket"))


def pretix_code(key, **fields):
    """A pretix_sig1 ticket code signed with `key`, as pretix prints it."""
    payload = pretix_message()(**fields).SerializeToString()
    sig = key.sign(payload)
    blob = bytes([1]) + struct.pack(">HH", len(payload), len(sig)) + payload + sig
    return base64.b64encode(blob).decode()[::-1]
