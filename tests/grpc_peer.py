"""Real gRPC peers for tests/grpc.rs: the reference implementation (grpcio from
PyPI), with generic handlers over raw bytes, so no generated code is needed.

  python3 grpc_peer.py server          prints its port, serves until killed
  python3 grpc_peer.py client ADDR     runs the calls below through ADDR and
                                       prints one JSON line per result; the
                                       last call streams until the test kills
                                       the server ("streaming" is printed once
                                       it flows) and reports how it ended.

Service /test.Echo: Unary (echo; "fail" → INVALID_ARGUMENT "bad input";
metadata x-meta echoed in the initial metadata; trailing x-trailer: yes),
ServerStream (the request 5 times), ClientStream (concatenated), Bidi (each
message echoed), Forever (a message every 50 ms, never ending).
"""
import json
import sys
import time
from concurrent import futures

import grpc

ident = lambda b: b  # noqa: E731  raw bytes both ways


def unary(request, context):
    if request == b"fail":
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad input")
    meta = dict(context.invocation_metadata())
    context.send_initial_metadata([("x-meta", meta.get("x-meta", ""))])
    context.set_trailing_metadata([("x-trailer", "yes")])
    return request


def server_stream(request, context):
    for _ in range(5):
        yield request


def client_stream(requests, context):
    return b"".join(requests)


def bidi(requests, context):
    for r in requests:
        yield r


def forever(request, context):
    while context.is_active():
        yield b"tick"
        time.sleep(0.05)


def serve():
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, ident, ident),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, ident, ident),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, ident, ident),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi, ident, ident),
        "Forever": grpc.unary_stream_rpc_method_handler(forever, ident, ident),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Echo", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


def report(name, **fields):
    print(json.dumps({"call": name, **fields}), flush=True)


def code_of(e):
    return e.code().value[0]


def client(addr):
    channel = grpc.insecure_channel(addr)
    grpc.channel_ready_future(channel).result(timeout=10)
    call = lambda kind, name: getattr(channel, kind)(f"/test.Echo/{name}", ident, ident)  # noqa: E731
    reply, c = call("unary_unary", "Unary").with_call(b"hello", metadata=[("x-meta", "m1")], timeout=10)
    report("unary", reply=reply.decode(), code=c.code().value[0],
           initial=dict(c.initial_metadata()).get("x-meta"),
           trailing=dict(c.trailing_metadata()).get("x-trailer"))
    try:
        call("unary_unary", "Unary")(b"fail", timeout=10)
        report("unary_error", code=0)
    except grpc.RpcError as e:
        report("unary_error", code=code_of(e), details=e.details())
    replies = list(call("unary_stream", "ServerStream")(b"s", timeout=10))
    report("server_stream", replies=[r.decode() for r in replies])
    reply = call("stream_unary", "ClientStream")(iter([b"a", b"b", b"c"]), timeout=10)
    report("client_stream", reply=reply.decode())
    replies = list(call("stream_stream", "Bidi")(iter([b"x", b"y", b"z"]), timeout=10))
    report("bidi", replies=[r.decode() for r in replies])
    try:
        channel.unary_unary("/test.Nope/Missing", ident, ident)(b"", timeout=10)
        report("unknown_method", code=0)
    except grpc.RpcError as e:
        report("unknown_method", code=code_of(e))
    # A long stream: the test kills the server once it flows.
    stream = call("unary_stream", "Forever")(b"", timeout=20)
    started = time.monotonic()
    got = 0
    try:
        for _ in stream:
            got += 1
            if got == 3:
                print("streaming", flush=True)
        report("killed_stream", code=0, messages=got)
    except grpc.RpcError as e:
        report("killed_stream", code=code_of(e), messages=got,
               seconds=round(time.monotonic() - started, 2))
    # The only target is gone: edgelb answers UNAVAILABLE itself.
    try:
        call("unary_unary", "Unary")(b"after", timeout=10)
        report("after_kill", code=0)
    except grpc.RpcError as e:
        report("after_kill", code=code_of(e), details=e.details())


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve()
    else:
        client(sys.argv[2])
