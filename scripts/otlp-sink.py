#!/usr/bin/env python3
"""A minimal OTLP/HTTP trace sink for benchmarks: accepts POST /v1/traces (protobuf), answers
200 with an empty ExportTraceServiceResponse, counts requests and bytes. It stands in for a
collector so that the services pay the full cost of exporting spans (serialising, HTTP) and
nothing else. Usage: otlp-sink.py PORT [STATS_FILE]; the stats file gets "requests bytes" on
SIGTERM."""
import http.server
import signal
import socketserver
import sys
import threading

PORT = int(sys.argv[1])
STATS = sys.argv[2] if len(sys.argv) > 2 else None
lock = threading.Lock()
counts = {"requests": 0, "bytes": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        with lock:
            counts["requests"] += 1
            counts["bytes"] += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def stop(*_):
    if STATS:
        with open(STATS, "w") as f:
            f.write(f"{counts['requests']} {counts['bytes']}\n")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
Server(("127.0.0.1", PORT), Handler).serve_forever()
