"""The passphrase can change and the key can go on paper (issue 18).

- `tresor key change-passphrase STORE` rewraps the master key: the old
  passphrase is refused from then on (exit 4), the new one opens the store
  and all its data; a wrong old passphrase changes nothing.
- The next push puts the new key file on the remote beside the first
  (keys/key-HASH), so `recover` works with the new passphrase; the old
  one still opens the copy made before (documented), and a store
  recovered with the new one pushes on.
- `tresor key export STORE` prints the key file for paper: the text turns
  back into the same bytes, and a store whose key file is restored from
  it opens.
"""

import base64
import hashlib
import os
import re
import subprocess

from conftest import PASSPHRASE, base_env, tresor


def secret(path, text):
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, text.encode())
    os.close(fd)
    return path


def files_of(mnt):
    return {p.relative_to(mnt).as_posix(): p.read_bytes() for p in mnt.rglob("*") if p.is_file()}


def test_change_passphrase_store_and_remote(make_store, mounts, tmp):
    store = make_store()
    m = mounts.mount(store, "vol")
    (m.path / "plans").mkdir()
    for i in range(5):
        (m.path / "plans" / ("p%d.bin" % i)).write_bytes(os.urandom(100000 + i))
    before = files_of(m.path)
    m.unmount()
    remote = tmp / "remote"
    remote.mkdir()
    tresor("remote", "add", store.path, "usb", remote, check=True)
    tresor("push", store.path, "usb", "--passphrase-file", store.passfile, check=True)
    keyfile = store.path / "tresor.key"
    old_bytes = keyfile.read_bytes()
    new = secret(tmp / "new-pass", "a much longer new passphrase\n")
    wrong = secret(tmp / "wrong", "not it\n")
    # a wrong old passphrase: nothing changes
    p = tresor("key", "change-passphrase", store.path, "--passphrase-file", wrong,
               "--new-passphrase-file", new)
    assert p.returncode == 4 and "wrong passphrase" in p.stderr
    assert keyfile.read_bytes() == old_bytes
    # the same passphrase again: refused
    p = tresor("key", "change-passphrase", store.path, "--passphrase-file", store.passfile,
               "--new-passphrase-file", store.passfile)
    assert p.returncode == 1 and "is the old one" in p.stderr
    # a new passphrase file others may read: refused, as every passphrase file
    loose = tmp / "loose"
    loose.write_text("loose\n")
    os.chmod(loose, 0o644)
    p = tresor("key", "change-passphrase", store.path, "--passphrase-file", store.passfile,
               "--new-passphrase-file", loose)
    assert p.returncode == 1 and "chmod 600" in p.stderr
    assert keyfile.read_bytes() == old_bytes
    # the change
    p = tresor("key", "change-passphrase", store.path, "--passphrase-file", store.passfile,
               "--new-passphrase-file", new, "--kdf-log2n", "11")
    assert p.returncode == 0, p.stderr
    assert keyfile.read_bytes() != old_bytes
    assert int.from_bytes(keyfile.read_bytes()[16:20], "little") == 11
    assert os.stat(keyfile).st_mode & 0o777 == 0o600
    p = tresor("check", store.path, "--passphrase-file", store.passfile)
    assert p.returncode == 4
    p = tresor("check", store.path, "--read-data", "--passphrase-file", new, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    m = mounts.mount(store, "vol", passfile=new)
    assert files_of(m.path) == before
    m.unmount()
    # the next push sends the new key file beside the first
    tresor("push", store.path, "usb", "--passphrase-file", new, check=True)
    keys = sorted(os.listdir(remote / "keys"))
    assert keys[0] == "key" and len(keys) == 2 and re.fullmatch(r"key-[0-9a-f]{32}", keys[1])
    assert (remote / "keys" / keys[1]).read_bytes() == keyfile.read_bytes()
    assert hashlib.sha256(keyfile.read_bytes()).hexdigest()[:32] == keys[1][4:]
    # a second push changes nothing there
    tresor("push", store.path, "usb", "--passphrase-file", new, check=True)
    assert sorted(os.listdir(remote / "keys")) == keys
    # recover with the new passphrase; the recovered store pushes on
    p = tresor("recover", remote, tmp / "rec", "--passphrase-file", new, timeout=300)
    assert p.returncode == 0, p.stderr
    p = tresor("recover", remote, tmp / "rec-wrong", "--passphrase-file", wrong, timeout=300)
    assert p.returncode == 4 and "wrong passphrase" in p.stderr
    rec = type(store)(tmp / "rec", new)
    m = mounts.mount(rec, "vol", passfile=new)
    (m.path / "after.txt").write_text("written after the recovery\n")
    m.unmount()
    p = tresor("push", rec.path, "origin", "--passphrase-file", new, timeout=300)
    assert p.returncode == 0, p.stderr
    p = tresor("check", rec.path, "--remote", "origin", "--read-data", "--passphrase-file", new,
               timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    # the old passphrase still opens the copy made before the change
    p = tresor("recover", remote, tmp / "rec-old", "--passphrase-file", store.passfile,
               timeout=300)
    assert p.returncode == 0, p.stderr


def test_change_passphrase_on_a_terminal_needs_it_twice(make_store, tmp):
    store = make_store()
    p = tresor("key", "change-passphrase", store.path, "--passphrase-file", store.passfile)
    assert p.returncode == 2 and "--new-passphrase-file" in p.stderr
    p = tresor("key", "change-passphrase", tmp / "nosuch", "--passphrase-file", store.passfile)
    assert p.returncode == 5


def test_key_export_for_paper(make_store, tmp):
    store = make_store()
    keyfile = store.path / "tresor.key"
    want = keyfile.read_bytes()
    p = tresor("key", "export", store.path)  # no passphrase needed
    assert p.returncode == 0, p.stderr
    text = p.stdout
    assert str(store.path) in text.splitlines()[0]
    body = text[text.index("-----BEGIN TRESOR KEY FILE-----\n") + 32:
                text.index("-----END TRESOR KEY FILE-----")]
    assert all(len(l) <= 64 for l in body.splitlines())
    assert base64.b64decode("".join(body.split())) == want
    digest = re.search(r"^sha256 ([0-9a-f]{16})\.\.\.$", text, re.M).group(1)
    assert hashlib.sha256(want).hexdigest().startswith(digest)
    # the printed way back, followed literally, gives a store that opens
    exported = tmp / "paper.txt"
    exported.write_text(text)
    keyfile.unlink()
    assert tresor("check", store.path, "--passphrase-file", store.passfile).returncode != 0
    line = [l for l in text.splitlines() if "base64 -d" in l][0].strip()
    cmd = line.replace("THIS", str(exported)).replace("STORE/", str(store.path) + "/")
    subprocess.run(["sh", "-c", cmd], check=True)
    os.chmod(keyfile, 0o600)
    assert keyfile.read_bytes() == want
    p = tresor("check", store.path, "--passphrase-file", store.passfile)
    assert p.returncode == 0, p.stderr
