"""`mtl-tf demo`: serve the browser demo (web_demo/) with an export's artifacts to LiteRT.js.

Routes: `/` the page, `/src/*` its modules, `/node_modules/@litertjs/{core,wasm-utils}/*` the
runtime (installed by `npm ci --prefix web_demo`), `/models.json` the artifacts of EXPORT_DIR and
`/models/<variant>/{model.tflite,metadata.json}` each one; with a bench folder (`mtl-tf bench
--out`), `/bench.json` and `/bench/<file>` its float32 single-task and multitask models. Every
response is cross-origin isolated (COOP/COEP), which multi-threaded WASM needs.
"""

from __future__ import annotations

import json
import mimetypes
import ssl
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

WEB_DEMO = Path(__file__).resolve().parents[1] / "web_demo"
RUNTIME_PACKAGES = ("@litertjs/core", "@litertjs/wasm-utils")
# Output/input element types LiteRT.js 2.5 loads (it rejects INT8 outputs: "Element type INT8 is not supported").
WEB_OUTPUT_TYPES = {"float32", "int32"}
WEB_INPUT_TYPES = {"uint8", "float32", "int32"}


class DemoError(ValueError):
    """The demo cannot be served as asked; the message says why and what to do."""


def check_web_demo(root: Path | None = None) -> Path:
    """`root` (default: web_demo/), once its LiteRT.js packages are installed (else a DemoError saying how)."""
    root = Path(root or WEB_DEMO)
    if not (root / "index.html").is_file():
        raise DemoError(f"{root}: no web demo page (index.html) here")
    missing = [p for p in RUNTIME_PACKAGES if not (root / "node_modules" / p / "package.json").is_file()]
    if missing:
        raise DemoError(f"{root / 'node_modules'} lacks {', '.join(missing)}: install the page's dependencies "
                        f"with `npm ci --prefix {root}`")
    return root


def web_loadable(meta: dict) -> tuple[bool, str]:
    """(True, "") when LiteRT.js can load the artifact of `meta`, else (False, why)."""
    bad = sorted({o["dtype"] for o in meta["outputs"].values()} - WEB_OUTPUT_TYPES)
    if bad:
        return False, f"{'/'.join(bad)} outputs: LiteRT.js cannot load them, export with --web"
    if meta.get("xnnpack_prepares") is False:
        return False, "XNNPACK refuses this int8 graph: LiteRT.js would return wrong outputs"
    if meta["input"]["dtype"] not in WEB_INPUT_TYPES:
        return False, f"{meta['input']['dtype']} input: LiteRT.js cannot feed it"
    if not meta["artifact"].endswith(".tflite"):
        return False, "not a .tflite artifact"
    return True, ""


def find_models(export_dir: Path) -> dict[str, Path]:
    """{variant: folder} of the TFLite artifacts under `export_dir` (an export folder, one
    variant's folder or a .tflite file beside its metadata.json); skips artifacts --verify
    rejected and hidden staging/backup folders. Loadable by LiteRT.js first (float32, web_int8)."""
    path = Path(export_dir)
    if not path.exists():
        raise DemoError(f"{path}: no such export folder")
    if path.is_file():
        path = path.parent
    candidates = [path] if (path / "metadata.json").is_file() else sorted(p.parent for p in path.glob("*/metadata.json"))
    found = {}
    for folder in candidates:
        if folder.name.endswith(".rejected") or folder.name.startswith("."):
            continue
        meta = json.loads((folder / "metadata.json").read_text())
        if str(meta.get("artifact", "")).endswith(".tflite") and (folder / meta["artifact"]).is_file():
            found[folder.name] = folder
    if not found:
        raise DemoError(f"{path}: no TFLite artifact with its metadata.json; export one with `mtl-tf export RUN --web`")
    order = lambda name: (not web_loadable(_meta(found[name]))[0], name != "float32", name)  # noqa: E731
    return {name: found[name] for name in sorted(found, key=order)}


def _meta(folder: Path) -> dict:
    return json.loads((folder / "metadata.json").read_text())


def find_bench(bench_dir: Path) -> dict:
    """{"multitask": path, "single": {task: path}} of the float32 TFLite models of an `mtl-tf
    bench` folder (its newest `artifacts-*` folder, or that folder itself)."""
    path = Path(bench_dir)
    folders = [path] if list(path.glob("multitask.float32.tflite")) else sorted(
        path.glob("artifacts-*/"), key=lambda p: p.stat().st_mtime, reverse=True)
    for folder in folders:
        multitask = folder / "multitask.float32.tflite"
        stats = folder / "stats.json"
        if multitask.is_file() and stats.is_file():
            tasks = [n for n in json.loads(stats.read_text()) if n not in ("trunk", "multitask")]
            single = {t: folder / f"{t}.float32.tflite" for t in tasks}
            missing = [str(p) for p in single.values() if not p.is_file()]
            if missing:
                raise DemoError(f"{folder}: single-task models missing: {', '.join(missing)}")
            return {"multitask": multitask, "single": single}
    raise DemoError(f"{path}: no multitask.float32.tflite of `mtl-tf bench RECIPE --runtimes tflite_fp32 --out {path}`")


class DemoHandler(SimpleHTTPRequestHandler):
    """Serves only the routes of this module's docstring (never a path outside them)."""

    def __init__(self, *args, root: Path, models: dict, bench: dict | None, **kwargs):
        self.root, self.models, self.bench = root, models, bench
        super().__init__(*args, directory=str(root), **kwargs)

    def log_message(self, format, *args):  # noqa: A002  (quiet: the page shows what happens)
        pass

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_GET(self):  # noqa: N802
        route = unquote(urlsplit(self.path).path)
        if route in ("/", "/index.html"):
            return self._file(self.root / "index.html")
        if route == "/models.json":
            models = []
            for name, folder in self.models.items():
                ok, why = web_loadable(_meta(folder))
                models.append({"name": name, "loadable": ok, "reason": why})
            return self._json({"models": models})
        if route == "/bench.json":
            if self.bench is None:
                return self._json({"error": "no bench models: start mtl-tf demo with --bench BENCH_DIR"})
            return self._json({"multitask": f"/bench/{self.bench['multitask'].name}",
                               "single": {t: f"/bench/{p.name}" for t, p in self.bench["single"].items()}})
        parts = route.strip("/").split("/")
        if parts[0] == "models" and len(parts) == 3 and parts[1] in self.models:
            folder = self.models[parts[1]]
            if parts[2] in ("metadata.json", _meta(folder)["artifact"]):
                return self._file(folder / parts[2])
        if parts[0] == "bench" and len(parts) == 2 and self.bench is not None:
            files = {p.name: p for p in [self.bench["multitask"], *self.bench["single"].values()]}
            if parts[1] in files:
                return self._file(files[parts[1]])
        if parts[0] == "src" and len(parts) == 2:
            return self._file(self.root / "src" / parts[1])
        if route.startswith("/node_modules/") and any(route.startswith(f"/node_modules/{p}/") for p in RUNTIME_PACKAGES):
            target = (self.root / route.lstrip("/")).resolve()
            if target.is_relative_to((self.root / "node_modules").resolve()):
                return self._file(target)
        self.send_error(404, f"not served: {route}")

    def _json(self, value):
        self._send(json.dumps(value).encode(), "application/json")

    def _file(self, path: Path):
        if not path.is_file():
            return self.send_error(404, f"not found: {path.name}")
        kind = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
                ".json": "application/json", ".tflite": "application/octet-stream"}.get(path.suffix)
        self._send(path.read_bytes(), kind or mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    def _send(self, body: bytes, kind: str):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def make_server(export_dir: Path, host: str = "127.0.0.1", port: int = 8000, bench_dir: Path | None = None,
                cert: Path | None = None, key: Path | None = None, root: Path | None = None) -> ThreadingHTTPServer:
    """The demo's HTTP(S) server (not started; port 0 picks a free port). `cert`/`key` (PEM):
    serve HTTPS, which a phone's browser needs for the camera on any host but localhost."""
    root = check_web_demo(root or WEB_DEMO)
    models = find_models(export_dir)
    bench = find_bench(bench_dir) if bench_dir else None
    handler = partial(DemoHandler, root=root, models=models, bench=bench)
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    if cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key) if key else None)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.models = models
    return server


def start_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Serve in a daemon thread (tests); stop with server.shutdown()."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def urls(server: ThreadingHTTPServer, https: bool = False) -> list[str]:
    """The addresses to open: the bound one, and this machine's LAN address for 0.0.0.0."""
    import socket

    host, port = server.server_address[:2]
    scheme = "https" if https else "http"
    hosts = [host if host not in ("0.0.0.0", "") else "localhost"]
    if host in ("0.0.0.0", ""):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect(("192.0.2.1", 9))  # no packet is sent: picks the outgoing interface
                hosts.append(s.getsockname()[0])
        except OSError:
            pass
    return [f"{scheme}://{h}:{port}/" for h in hosts]
