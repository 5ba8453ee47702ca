"""The model hub (zoo.hub, zoo.builder.load): save / load round trips, weights overrides and
errors, atomic saves, verified downloads and remote weights."""
import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest
import torch
from tiny_models import out, tiny

import zoo
from zoo import hub, registry
from zoo.config import default_config
from zoo.hub import ChecksumError, DownloadError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    h = tmp_path / "zoo_home"
    monkeypatch.setenv("ZOO_HOME", str(h))
    monkeypatch.setattr(registry, "REMOTE", {})
    return h


def visible_files(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# ---------------------------------------------------------------------------- save / load

@pytest.mark.parametrize("bn", [False, True])
def test_create_save_load_round_trip(home, bn):
    m = tiny(batch_norm=bn)
    cfg = dict(m.zoo_config, training={"epochs": 3, "data": "orl"},
               metrics={"orl_balanced_acc": 0.91})
    folder = zoo.save(m, cfg)
    assert folder == home / "tiny-a"
    assert visible_files(folder) == ["config.json", "model.safetensors"]
    for spec in ("tiny-a", folder, str(folder / "model.safetensors")):
        m2 = zoo.load(spec)
        assert not m2.training
        assert torch.equal(out(m), out(m2))
        assert m2.zoo_config == cfg_resolved(cfg)
        assert m2.zoo_config["metrics"] == {"orl_balanced_acc": 0.91}
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    on_disk = json.loads((folder / "config.json").read_text())
    assert on_disk["arch"] == cfg["arch"] and on_disk["target_layer"] == m.target_layer


def cfg_resolved(cfg):
    return default_config(dict(cfg))


def test_save_defaults_to_zoo_config_and_name_argument(home, tmp_path):
    m = tiny()
    assert zoo.save(m, name="other") == home / "other"
    assert zoo.load("other").zoo_config["name"] == "other"
    root = tmp_path / "elsewhere"
    assert zoo.save(m, root=root) == root / "tiny-a"
    assert torch.equal(out(zoo.load(root / "tiny-a")), out(m))


def test_save_refuses_a_config_that_does_not_describe_the_model(home):
    m = tiny()
    with pytest.raises(ValueError, match="width"):
        zoo.save(m, default_config(m.zoo_config, width=0.5))
    with pytest.raises(TypeError, match="VGGFace"):
        zoo.save(torch.nn.Linear(2, 2), m.zoo_config)
    assert not (home / "tiny-a").exists()


def test_weights_override_and_mismatch_errors_name_keys_and_shapes(home, tmp_path):
    zoo.save(tiny())
    other = tiny(seed=5)
    zoo.save(other, name="tiny-b")
    wb = home / "tiny-b" / "model.safetensors"
    m = zoo.load("tiny-a", weights=wb)         # registered config, other weights
    assert torch.equal(out(m), out(other)) and m.zoo_config["name"] == "tiny-a"

    zoo.save(tiny(width=1 / 8), name="wide")
    wide = home / "wide" / "model.safetensors"
    with pytest.raises(ValueError) as e:
        zoo.load("tiny-a", weights=wide)
    msg = str(e.value)
    assert str(wide) in msg and "shape mismatches" in msg
    assert "features.0.weight: file (8, 3, 3, 3) vs model (4, 3, 3, 3)" in msg

    zoo.save(tiny(depth=16), name="deeper")
    with pytest.raises(ValueError) as e:
        zoo.load("tiny-a", weights=home / "deeper" / "model.safetensors")
    assert "unexpected keys" in str(e.value) and "features.24.weight" in str(e.value)
    with pytest.raises(ValueError, match="missing keys"):
        zoo.load("deeper", weights=home / "tiny-a" / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        zoo.load("tiny-a", weights=tmp_path / "nope.safetensors")


def test_torch_checkpoints_load_weights_only(home, tmp_path):
    m = tiny()
    zoo.save(m)
    ckpt = tmp_path / "ckpt.pt"  # a DDP-style training checkpoint
    torch.save({"model": {f"module.{k}": v for k, v in m.state_dict().items()}, "epoch": 3}, ckpt)
    assert torch.equal(out(zoo.load("tiny-a", weights=ckpt)), out(m))

    evil = tmp_path / "evil.pt"
    torch.save({"model": m.state_dict(), "obj": Path("x")}, evil)  # needs real unpickling
    with pytest.raises(ValueError, match="evil.pt.*weights-only"):
        zoo.load("tiny-a", weights=evil)


def test_corrupt_files_are_reported_with_their_name(home):
    folder = zoo.save(tiny())
    w, c = folder / "model.safetensors", folder / "config.json"
    good_c = c.read_text()
    c.write_text(good_c[: len(good_c) // 2])
    with pytest.raises(ValueError, match=f"{c}.*not valid JSON"):
        zoo.load("tiny-a")
    c.write_text(good_c.replace('"ecloss",', '"hinge",'))
    with pytest.raises(ValueError, match=f"{c}: loss must be one of"):
        zoo.load("tiny-a")
    assert '"feature_channels": 32,' in good_c
    c.write_text(good_c.replace('"feature_channels": 32,', '"feature_channels": 33,'))
    with pytest.raises(ValueError, match=f"{c}: config says feature_channels=33"):
        zoo.load("tiny-a")
    c.write_text(good_c)
    data = w.read_bytes()
    w.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match=f"{w}: corrupt or unreadable safetensors"):
        zoo.load("tiny-a")
    w.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=f"{w}: corrupt"):
        zoo.load(w)


def test_safetensors_file_without_config_uses_the_config_stored_inside(home, tmp_path):
    m = tiny()
    folder = zoo.save(m)
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes((folder / "model.safetensors").read_bytes())
    m2 = zoo.load(lone)
    assert torch.equal(out(m2), out(m)) and m2.zoo_config == m.zoo_config


# ---------------------------------------------------------------------------- atomic saves

def test_save_failing_before_the_rename_keeps_the_previous_model(home, monkeypatch):
    old = tiny()
    folder = zoo.save(old)
    new = tiny(width=1 / 8, seed=7)

    def boom(src, dst):
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        zoo.save(new, name="tiny-a")
    monkeypatch.undo()
    monkeypatch.setenv("ZOO_HOME", str(home))
    assert visible_files(folder) == ["config.json", "model.safetensors"]  # temp files removed
    m = zoo.load("tiny-a")
    assert torch.equal(out(m), out(old)) and m.width == 1 / 16


def test_save_failing_between_the_renames_loads_a_consistent_model(home, monkeypatch):
    old = tiny()
    folder = zoo.save(old)
    new = tiny(width=1 / 8, seed=7)
    real, calls = os.replace, []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("crash between renames (simulated)")
        return real(src, dst)
    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(OSError, match="simulated"):
        zoo.save(new, name="tiny-a")
    monkeypatch.setattr(os, "replace", real)
    assert visible_files(folder) == ["config.json", "model.safetensors"]
    # config.json is the old one, the weights the new: load must pair them by save id.
    assert json.loads((folder / "config.json").read_text())["arch"]["width"] == 1 / 16
    with pytest.warns(UserWarning, match="interrupted save"):
        m = zoo.load("tiny-a")
    assert m.width == 1 / 8 and torch.equal(out(m), out(new))


CHILD = r"""
import os, sys, time
import zoo
src, root, where = sys.argv[1], sys.argv[2], sys.argv[3]
m = zoo.load(src)
real_fsync, real_replace, n = os.fsync, os.replace, [0]
def hang():
    print("HANG", flush=True)
    time.sleep(60)
def fsync(fd):
    real_fsync(fd)
    if where == "write":       # the weights temp file is written, nothing renamed yet
        hang()
def replace(a, b):
    n[0] += 1
    if where == "rename" and n[0] == 2:   # new weights in place, config.json still old
        hang()
    real_replace(a, b)
os.fsync, os.replace = fsync, replace
zoo.save(m, name="tiny-a", root=root)
print("DONE", flush=True)
"""


@pytest.mark.parametrize("where", ["write", "rename"])
def test_save_killed_with_sigkill_leaves_a_loadable_model(home, tmp_path, where):
    old = tiny()
    folder = zoo.save(old)
    new = tiny(width=1 / 8, seed=7)
    src = zoo.save(new, root=tmp_path / "src", name="new")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(src), str(home), where],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "HANG", (line, proc.stderr.read() if proc.poll() is not None
                                        else "")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Only hidden temp files may be left; the model files are complete.
    assert [f for f in visible_files(folder) if not f.startswith(".")] == [
        "config.json", "model.safetensors"]
    if where == "write":
        m = zoo.load("tiny-a")
        assert torch.equal(out(m), out(old))
    else:
        with pytest.warns(UserWarning, match="interrupted save"):
            m = zoo.load("tiny-a")
        assert torch.equal(out(m), out(new))
    assert zoo.list_models("tiny*") == ["tiny-a"]
    zoo.save(old)  # the next save sweeps the dead process's temp files
    assert visible_files(folder) == ["config.json", "model.safetensors"]
    assert torch.equal(out(zoo.load("tiny-a")), out(old))


# ---------------------------------------------------------------------------- downloads

class _Handler(http.server.SimpleHTTPRequestHandler):
    requests = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        if self.path.startswith("/short/"):  # promise N bytes, send N/2, hang up
            data = (Path(self.directory) / self.path[len("/short/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            partial(_Handler, directory=str(served)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _publish(served, model, fname="tiny.safetensors"):
    folder = zoo.save(model, root=served / "_build")
    data = (folder / "model.safetensors").read_bytes()
    (served / fname).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_url_download_with_hash_loads_and_is_cached(home, server):
    served, base = server
    m = tiny()
    sha = _publish(served, m)
    zoo.save(tiny(seed=9))  # registered config; weights come from the url
    url = f"{base}/tiny.safetensors"
    m2 = zoo.load("tiny-a", weights=url, sha256=sha, progress=False)
    assert torch.equal(out(m2), out(m))
    cache = home / hub.DOWNLOADS_DIR
    cached = cache / f"tiny-{sha[:16]}.safetensors"
    assert visible_files(cache) == [cached.name]
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
    assert _Handler.requests == ["/tiny.safetensors"]
    # Reused without a request.
    assert hub.download(url, sha, cache, progress=False) == cached
    assert _Handler.requests == ["/tiny.safetensors"]
    # A cached file altered on disk is re-verified, dropped and fetched again.
    cached.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="downloading again"):
        assert hub.download(url, sha, cache, progress=False) == cached
    assert len(_Handler.requests) == 2
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
    with pytest.raises(ValueError, match="sha256="):
        zoo.load("tiny-a", weights=url)


def test_tampered_download_fails_the_hash_check_and_is_not_cached(home, server):
    served, base = server
    sha = _publish(served, tiny())
    p = served / "tiny.safetensors"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    bad = hashlib.sha256(bytes(data)).hexdigest()
    url = f"{base}/tiny.safetensors"
    with pytest.raises(ChecksumError) as e:
        hub.download(url, sha, progress=False)
    msg = str(e.value)
    assert url in msg and sha in msg and bad in msg
    cache = home / hub.DOWNLOADS_DIR
    assert list(cache.iterdir()) == []  # no file at all, hidden temp files included
    zoo.save(tiny())
    with pytest.raises(ChecksumError):
        zoo.load("tiny-a", weights=url, sha256=sha, progress=False)
    assert list(cache.iterdir()) == []


def test_truncated_download_is_reported_and_not_cached(home, server):
    served, base = server
    sha = _publish(served, tiny())
    url = f"{base}/short/tiny.safetensors"
    with pytest.raises(DownloadError) as e:
        hub.download(url, sha, progress=False)
    assert url in str(e.value) and not isinstance(e.value, ChecksumError)
    assert "incomplete" in str(e.value) or "interrupted" in str(e.value)
    assert list((home / hub.DOWNLOADS_DIR).iterdir()) == []


def test_missing_url_and_bad_hash_arguments(home, server):
    served, base = server
    with pytest.raises(DownloadError, match="404"):
        hub.download(f"{base}/nothing.safetensors", "0" * 64, progress=False)
    assert list((home / hub.DOWNLOADS_DIR).iterdir()) == []
    with pytest.raises(ValueError, match="64 hex"):
        hub.download(f"{base}/x", "abc", progress=False)
    with pytest.raises(ValueError, match="url"):
        hub.download("ftp://example.org/x", "0" * 64, progress=False)


def test_register_remote_lists_and_loads_by_name(home, server):
    served, base = server
    m = tiny()
    sha = _publish(served, m)
    registry.register_remote("tiny-remote", f"{base}/tiny.safetensors", sha,
                             config=m.zoo_config)
    assert "tiny-remote" in zoo.list_models()
    m2 = zoo.load("tiny-remote", progress=False)
    assert torch.equal(out(m2), out(m)) and m2.zoo_config["name"] == "tiny-remote"
    with pytest.raises(ValueError, match="config="):
        registry.register_remote("custom", f"{base}/x", sha)
    # a paper name with remote weights needs no config; wrong-arch weights fail the fit check
    registry.register_remote("vgg13-ecloss", f"{base}/tiny.safetensors", sha)
    with pytest.raises(ValueError, match="shape mismatches"):
        zoo.load("vgg13-ecloss", progress=False)
