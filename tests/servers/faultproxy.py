"""faultproxy.py - a recording, fault-injecting HTTP(S) reverse proxy on
127.0.0.1 for tresor's remote tests (S3 via s3rver, WebDAV via apache).

It forwards each request to the real server and records what passed
(method, path, query, headers, small bodies, the status the server gave
and the status the client got), and on request it misbehaves the way
networks and servers do:

  status    answer 500/503 (with an S3-style XML error) without forwarding
  stall     wait `seconds` before forwarding (a slow server)
  drop      close the connection before reading the request
  cut_request   read half of the request body, then close (no answer)
  cut_response  forward, send the headers and half of the body, close
                (Content-Length promised more)
  truncate  forward, answer with half of the body and a Content-Length
            that matches it (a short body that looks whole)

Faults match on method and a regular expression over the path (with the
query), let the first `after` matching requests pass, then apply `count`
times (None: for ever).  Everything else goes through as is: the
Host header is kept (SigV4 signs it), Expect and hop-by-hop headers are
dropped.  Used as a library (FaultProxy(...).start() runs it in a thread)
from tests/integration.

S3 create-only puts: s3rver ignores `If-None-Match: *` and writes an
object in place, so two PUTs of one key at the same moment can interleave
into one damaged object, which S3 never does.  With create_only the proxy
gives such PUTs S3's semantics for the keys it saw created: one at a time,
and 412 PreconditionFailed once the key was created through it.

S3 Object Lock: the s3rver fork implements no Object Lock.  It checks the
signature of PutObjectRetention (`PUT ?retention=`) and then answers 405
MethodNotAllowed; with emulate_retention the proxy records that answer and
gives the client 200, as S3 with Object Lock would.  What is tested that
way is that the request is well formed and correctly signed, not that a
server enforces the lock.
"""

import contextlib
import http.client
import http.server
import re
import socket
import ssl
import threading
import time
import urllib.parse

HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer",
       "transfer-encoding", "upgrade", "expect"}
KEEP_BODY = 64 * 1024

S3_ERRORS = {
    412: ("PreconditionFailed", "At least one of the pre-conditions you specified did not hold."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
}


class Fault:
    def __init__(self, action, method=None, path=None, count=1, after=0, **params):
        self.action = action
        self.after = after          # let this many matching requests pass first
        self.seen = 0
        self.method = method
        self.path = re.compile(path) if path else None
        self.count = count
        self.params = params
        self.hits = 0

    def matches(self, method, target):
        if self.count is not None and self.hits >= self.count:
            return False
        if self.method and self.method != method:
            return False
        if self.path and not self.path.search(target):
            return False
        self.seen += 1
        return self.seen > self.after


class Record:
    def __init__(self, method, target, headers, body_len, body):
        u = urllib.parse.urlsplit(target)
        self.method = method
        self.target = target
        self.path = u.path
        self.query = u.query
        self.headers = headers          # lower-case names
        self.body_len = body_len
        self.body = body                # bytes when small, else None
        self.thread = threading.get_ident()
        self.upstream_status = None
        self.status = None              # what the client got (None: cut)
        self.fault = None
        self.time = time.time()         # request head read
        self.end = None                 # answer sent (or connection cut)

    def __repr__(self):
        return "<%s %s -> %s (server %s)%s>" % (
            self.method, self.target, self.status, self.upstream_status,
            " fault " + self.fault if self.fault else "")


class FaultProxy:
    def __init__(self, upstream_port, upstream_host="127.0.0.1", tls=None,
                 upstream_ca=None, emulate_retention=False, create_only=False):
        """tls: (certfile, keyfile) to serve HTTPS; upstream_ca: the CA of
        an HTTPS upstream (None: plain HTTP upstream)."""
        self.upstream = (upstream_host, upstream_port)
        self.tls = tls
        self.upstream_ca = upstream_ca
        self.emulate_retention = emulate_retention
        self.create_only = create_only
        self.created = set()
        self.create_lock = threading.Lock()
        self.faults = []
        self.records = []
        self.lock = threading.Lock()
        self.httpd = None
        self.thread = None
        self.port = None

    # --- control -------------------------------------------------------
    def add(self, action, method=None, path=None, count=1, after=0, **params):
        f = Fault(action, method, path, count, after, **params)
        with self.lock:
            self.faults.append(f)
        return f

    def clear(self):
        with self.lock:
            self.faults = []
            self.records = []

    def clear_faults(self):
        with self.lock:
            self.faults = []

    def take_fault(self, method, target):
        with self.lock:
            for f in self.faults:
                if f.matches(method, target):
                    f.hits += 1
                    return f
        return None

    def record(self, rec):
        with self.lock:
            self.records.append(rec)

    def log(self):
        with self.lock:
            return list(self.records)

    def start(self):
        proxy = self

        class Handler(ProxyHandler):
            pass
        Handler.proxy = proxy
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    @property
    def endpoint(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

    def connect_upstream(self):
        if self.upstream_ca:
            ctx = ssl.create_default_context(cafile=str(self.upstream_ca))
            return http.client.HTTPSConnection(*self.upstream, timeout=300, context=ctx)
        return http.client.HTTPConnection(*self.upstream, timeout=300)


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy = None

    def log_message(self, fmt, *args):
        pass

    def _cut(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_body(self, limit=None):
        n = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise RuntimeError("chunked request bodies are not supported")
        want = n if limit is None else min(n, limit)
        buf = bytearray()
        while len(buf) < want:
            chunk = self.rfile.read(min(1 << 20, want - len(buf)))
            if not chunk:
                break
            buf += chunk
        return bytes(buf), n

    def _send(self, status, reason, headers, body, head=False, promise=None):
        """Send a response; promise: the Content-Length to announce."""
        self.send_response_only(status, reason)
        for k, v in headers:
            if k.lower() in HOP or k.lower() == "content-length":
                continue
            self.send_header(k, v)
        if head:
            cl = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
            self.send_header("Content-Length", cl)
        else:
            self.send_header("Content-Length", str(len(body) if promise is None else promise))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)
        self.wfile.flush()

    def _send_error(self, rec, code):
        """An S3-style XML error answered by the proxy itself."""
        ecode, msg = S3_ERRORS.get(code, ("InternalError", "error"))
        xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
               '<Message>%s</Message></Error>' % (ecode, msg)).encode()
        rec.status = code
        self._send(code, None, [("Content-Type", "application/xml")], xml, head=False)

    def handle_one(self):
        p = self.proxy
        method = self.command
        target = self.path
        hdrs = {k.lower(): v for k, v in self.headers.items()}
        fault = p.take_fault(method, target)
        if fault and fault.action == "drop":
            rec = Record(method, target, hdrs, 0, None)
            rec.fault = "drop"
            p.record(rec)
            self._cut()
            return
        if fault and fault.action == "cut_request":
            n = int(self.headers.get("Content-Length") or 0)
            self._read_body(limit=n // 2)
            rec = Record(method, target, hdrs, n, None)
            rec.fault = "cut_request"
            p.record(rec)
            self._cut()
            return
        body, n = self._read_body()
        rec = Record(method, target, hdrs, n, body if n <= KEEP_BODY else None)
        if fault:
            rec.fault = fault.action
        p.record(rec)   # now: a stalled request shows in the log at once
        if fault and fault.action == "status":
            self._send_error(rec, fault.params.get("status", 503))
            return
        if fault and fault.action == "stall":
            time.sleep(fault.params.get("seconds", 3))
        fwd = {}
        for k, v in self.headers.items():
            if k.lower() not in HOP:
                fwd[k] = v
        cond = (p.create_only and method == "PUT" and
                hdrs.get("if-none-match", "").strip() == "*")
        key = target.split("?", 1)[0]
        with p.create_lock if cond else contextlib.nullcontext():
            if cond and key in p.created:
                self._send_error(rec, 412)
                return
            conn = p.connect_upstream()
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for k, v in fwd.items():
                    conn.putheader(k, v)
                conn.endheaders(body if body or n else None)
                resp = conn.getresponse()
                rbody = resp.read()
                status, reason, rheaders = resp.status, resp.reason, resp.getheaders()
            finally:
                conn.close()
            if cond and 200 <= status < 300:
                p.created.add(key)
        rec.upstream_status = status
        head = method == "HEAD"
        if (p.emulate_retention and method == "PUT" and
                "retention" in urllib.parse.parse_qs(rec.query, keep_blank_values=True)
                and status == 405):
            rec.status = 200
            rec.fault = "emulated-retention"
            self._send(200, "OK", [], b"")
            return
        if fault and fault.action == "cut_response" and not head and len(rbody) > 1:
            rec.status = status
            self._send(status, reason, rheaders, rbody[:len(rbody) // 2],
                       promise=len(rbody))
            self._cut()
            return
        if fault and fault.action == "truncate" and not head and len(rbody) > 1:
            rec.status = status
            self._send(status, reason, rheaders, rbody[:len(rbody) // 2])
            return
        rec.status = status
        self._send(status, reason, rheaders, rbody, head=head)

    def do_any(self):
        try:
            self.handle_one()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        finally:
            now = time.time()
            for r in reversed(self.proxy.log()):
                if r.end is None and r.thread == threading.get_ident():
                    r.end = now
                    break

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_any
    do_MKCOL = do_MOVE = do_PROPFIND = do_OPTIONS = do_COPY = do_any
