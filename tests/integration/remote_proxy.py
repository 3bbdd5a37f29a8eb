"""Shared glue for the push tests that put tests/servers/faultproxy.py in
front of the real servers: fixtures starting the proxy before s3rver or
apache, a Remote pointing through it, and an independent SigV4 check
(botocore) of recorded S3 requests.

Import the fixtures by name into a test module (pytest finds them there).
"""

import base64
import hashlib
import re
import sys
import warnings
from pathlib import Path

import pytest

from conftest import base_env
import test_remote_s3 as s3mod
from test_push_recover import Remote, davserver, s3server  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))
from faultproxy import FaultProxy  # noqa: E402


@pytest.fixture(scope="module")
def s3proxy(s3server):
    """A recording/fault proxy in front of the module's s3rver."""
    px = FaultProxy(s3server.port, emulate_retention=True).start()
    yield px
    px.stop()


@pytest.fixture(scope="module")
def davproxy(davserver):
    """The same in front of apache (HTTPS on both sides, apache's cert)."""
    px = FaultProxy(davserver.port, tls=(str(davserver.dir / "server.crt"),
                                         str(davserver.dir / "server.key")),
                    upstream_ca=davserver.ca).start()
    yield px
    px.stop()


def s3_remote(tmp, proxy, tag):
    """A Remote on s3rver whose traffic goes through proxy."""
    home = tmp / "s3home"
    home.mkdir(exist_ok=True)
    env = s3mod.clean_env(AWS_ACCESS_KEY_ID=s3mod.ACCESS_KEY,
                          AWS_SECRET_ACCESS_KEY=s3mod.SECRET_KEY, HOME=home)
    env.pop("TRESOR_PASSPHRASE", None)
    opts = ["--endpoint", proxy.endpoint, "--path-style"]
    return Remote("s3", "s3://%s/px/%s" % (s3mod.BUCKET, tag), opts, env, opts)


def dav_remote(proxy, davserver, tag):
    opts = davserver.opts()
    return Remote("webdav", "https://127.0.0.1:%d/%s" % (proxy.port, tag), opts,
                  base_env(), opts)


AUTH_RE = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request,"
                     r" ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$")


def signed_headers(rec):
    m = AUTH_RE.match(rec.headers.get("authorization", ""))
    assert m, "request not SigV4-signed: %r %r" % (rec, rec.headers.get("authorization"))
    return m.group(4).split(";")


def verify_sigv4(rec):
    """Recompute the request's SigV4 signature with botocore (an independent
    implementation) from what went over the wire; it must be the one sent."""
    try:
        import botocore  # noqa: F401
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import awscli  # noqa: F401  Debian's awscli vendors botocore, registers it
            import botocore.httpsession  # noqa: F401
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    m = AUTH_RE.match(rec.headers.get("authorization", ""))
    assert m, rec
    assert m.group(1) == s3mod.ACCESS_KEY
    signed = m.group(4).split(";")
    assert rec.body is not None or rec.body_len == 0, "body not kept: %r" % rec
    body = rec.body or b""
    assert rec.headers["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest(), rec
    url = "http://%s%s" % (rec.headers["host"], rec.target)
    req = AWSRequest(method=rec.method, url=url, data=body,
                     headers={h: rec.headers[h] for h in signed})
    auth = SigV4Auth(Credentials(s3mod.ACCESS_KEY, s3mod.SECRET_KEY), "s3", m.group(3))
    req.context["timestamp"] = rec.headers["x-amz-date"]
    canonical = auth.canonical_request(req)
    sig = auth.signature(auth.string_to_sign(req, canonical), req)
    assert sig == m.group(5), "botocore computes another signature for %r:\n%s" % (
        rec, canonical)


def content_md5_ok(rec):
    return rec.body is not None and rec.headers.get("content-md5") == \
        base64.b64encode(hashlib.md5(rec.body).digest()).decode()
