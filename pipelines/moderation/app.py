"""The moderators' review app (``deeptrust serve``): the queue, a video's page, decisions, and a
check of one uploaded video, as HTML pages (Jinja2 and htmx) and as a JSON API.

Decisions go through ``pipelines.moderation.review``, the code ``deeptrust review`` runs: a
moderator claims a video, then decides it with a note, and a decision on a video that someone
else claimed or decided meanwhile is refused (409) and changes nothing.

Every request but the static files and ``/healthz`` needs a moderator named by the trusted proxy
(``identity.IdentityRules``, else 401). Forms carry a CSRF token (else 403); the JSON API takes
only ``application/json`` bodies (else 415), which no page of another site can send here.
Request bodies are capped (413).
"""

from __future__ import annotations

import contextlib
import json
import logging
import mimetypes
from base64 import b64encode
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.config import FaceCropConfig
from model.errors import VideoError
from model.storage import is_s3, split_s3
from pipelines.moderation import pages
from pipelines.moderation.check import Checker, TooLarge, keep, upload_dir
from pipelines.moderation.frames import Pictures
from pipelines.moderation.identity import FormTokens, IdentityRules, NoIdentity
from pipelines.moderation.queue import (
    STATUS_FILTERS,
    QueueFilter,
    VideoDetail,
    list_queue,
    video_detail,
    video_id,
    video_uri,
)
from pipelines.moderation.report import most_suspicious
from pipelines.moderation.review import (
    MAX_NOTE_CHARS,
    NotFlagged,
    Review,
    ReviewConflict,
    ReviewState,
    check_review,
    claim_video,
    read_state,
    record_review,
    release_claim,
)

_LOG = logging.getLogger("deeptrust.serve")
OPEN_PATHS = ("/static/", "/healthz")
MAX_FORM_BYTES = 4 << 20  # a note is at most 10,000 characters; this leaves room to say so


@dataclass
class ServeSettings:
    """What ``deeptrust serve`` was started with."""

    identity: IdentityRules
    tokens: FormTokens = field(default_factory=FormTokens)
    claim_ttl_s: float = 30 * 60
    presign_ttl_s: int = 10 * 60
    face: FaceCropConfig = field(default_factory=FaceCropConfig)
    checker: Checker | None = None
    keep_uploads: Path | None = None  # where checked videos are kept when a moderator asks


class Refusal(Exception):
    """A request the app answers with ``status`` and a message, changing nothing."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


class BodyLimit:
    """ASGI middleware: a request body over its path's cap gets 413 and is not read further."""

    def __init__(self, app: ASGIApp, upload_bytes: int) -> None:
        self.app = app
        self.upload_bytes = upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # An upload's form adds its field names and boundaries to the file: a little slack.
        cap = self.upload_bytes + (64 << 10) if scope["path"] == "/check" else MAX_FORM_BYTES
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            await _too_large(scope, send, cap)
            return
        seen = 0
        over = False

        async def counted() -> Message:
            nonlocal seen, over
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > cap:
                over = True
                raise TooLarge(f"the request is over {cap:,} bytes")
            return message

        async def unless_over(message: Message) -> None:
            # Once the body overflowed, the app's own answer (a 500 for the exception) is
            # replaced by the 413 below.
            if not over:
                await send(message)

        with contextlib.suppress(TooLarge):
            await self.app(scope, counted, unless_over)
        if over:
            await _too_large(scope, send, cap)


async def _too_large(scope: Scope, send: Send, cap: int) -> None:
    what = "upload" if scope["path"] == "/check" else "request"
    text = f"The {what} is over {cap:,} bytes, the most this app accepts here; nothing was kept."
    body, kind = (
        (json.dumps({"error": text}).encode(), b"application/json")
        if scope["path"].startswith("/api/")
        else (_page("Too large", text).encode(), b"text/html; charset=utf-8")
    )
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def presigner():
    """An S3 client that presigns with Signature Version 4, which every region accepts."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(signature_version="s3v4"))


_ENV = pages.environment()
_ENV.globals.update(urlencode=urlencode, video_id=video_id)


def _page(title: str, message: str, reviewer: str | None = None) -> str:
    return _ENV.get_template("error.html").render(title=title, message=message, reviewer=reviewer)


def create_app(engine: Engine, settings: ServeSettings) -> FastAPI:
    """The app over a migrated moderation database."""
    app = FastAPI(
        title="DeepTrust review",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    pictures = Pictures(settings.face)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")

    def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        reviewer = getattr(request.state, "reviewer", None)
        token = settings.tokens.token(reviewer) if reviewer else ""
        values = {"message": None, "message_kind": None, "oob": False} | context
        html = _ENV.get_template(name).render(
            reviewer=reviewer, csrf=token, max_note=MAX_NOTE_CHARS, **values
        )
        return HTMLResponse(html, status_code=status)

    @app.middleware("http")
    async def who_is_asking(request: Request, call_next):
        if request.url.path.startswith(OPEN_PATHS):
            return await call_next(request)
        peer = request.client.host if request.client else None
        try:
            request.state.reviewer = settings.identity.reviewer(peer, request.headers)
        except NoIdentity as err:
            _LOG.warning("refused %s %s from %s: %s", request.method, request.url.path, peer, err)
            if request.url.path.startswith("/api/"):
                return JSONResponse({"error": str(err)}, status_code=401)
            return HTMLResponse(_page("Not signed in", str(err)), status_code=401)
        return await call_next(request)

    @app.exception_handler(Refusal)
    async def refused(request: Request, err: Refusal):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": err.message}, status_code=err.status)
        return render(request, "error.html", err.status, title=err.title, message=err.message)

    def detail_of(vid: str) -> VideoDetail:
        try:
            uri = video_uri(vid)
        except ValueError as err:
            raise Refusal(404, "No such video", str(err)) from err
        found = video_detail(engine, uri)
        if found is None:
            raise Refusal(404, "No such video", "no flagged video has this id")
        return found

    # --- the queue ---

    def queue_filter(request: Request) -> QueueFilter:
        query = request.query_params
        kinds: dict[str, Any] = {"score_min": float, "score_max": float, "page": int}
        kinds |= {"per_page": int, "since": date.fromisoformat, "until": date.fromisoformat}
        values: dict[str, Any] = {}
        for name in ("status", "sort", "run_id", "model_version", *kinds):
            if query.get(name):
                try:
                    values[name] = kinds.get(name, str)(query[name])
                except ValueError as err:
                    raise Refusal(400, "Bad filter", f"{name} {query[name]!r}: {err}") from err
        try:
            return QueueFilter(**values).checked()
        except ValueError as err:
            raise Refusal(400, "Bad filter", f"the queue cannot show that: {err}") from err

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    @app.get("/", response_class=HTMLResponse)
    def queue_page(request: Request):
        page = list_queue(engine, queue_filter(request))
        return render(request, "queue.html", page=page, statuses=STATUS_FILTERS)

    @app.get("/api/queue")
    def queue_api(request: Request):
        page = list_queue(engine, queue_filter(request))
        return {
            "items": [item.as_json() for item in page.items],
            "total": page.total,
            "counts": page.counts,
            "page": page.filter.page,
            "pages": page.pages,
            "filter": page.filter.query(),
        }

    # --- a video ---

    @app.get("/videos/{vid}", response_class=HTMLResponse)
    def video_page(request: Request, vid: str):
        video = detail_of(vid)
        top = most_suspicious(video.segments) if video.segments else None
        return render(request, "video.html", video=video, top=top)

    @app.get("/api/videos/{vid}")
    def video_api(vid: str):
        return detail_of(vid).as_json()

    @app.get("/videos/{vid}/media")
    def media(vid: str):
        video = detail_of(vid)
        uri = video.video_uri
        if is_s3(uri):
            bucket, key = split_s3(uri)
            url = presigner().generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": key},
                ExpiresIn=settings.presign_ttl_s,
            )
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
        path = Path(uri)
        if not path.is_file():
            raise Refusal(404, "Video unavailable", "the video's file is no longer there")
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=kind, content_disposition_type="inline")

    @app.get("/videos/{vid}/thumbnail.jpg")
    def thumbnail(vid: str):
        video = detail_of(vid)
        top = most_suspicious(video.segments) if video.segments else {"start_s": 0.0}
        try:
            data = pictures.thumbnail(video.video_uri, video.row["content_version"], top["start_s"])
        except (VideoError, OSError) as err:
            raise Refusal(404, "No thumbnail", f"the video could not be read: {err}") from err
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private"})

    @app.get("/videos/{vid}/faces", response_class=HTMLResponse)
    def faces(request: Request, vid: str):
        video = detail_of(vid)
        problem, found = None, []
        if not video.segments:
            problem = "the row records no windows"
        else:
            top = most_suspicious(video.segments)
            try:
                found = pictures.faces(
                    video.video_uri, video.row["content_version"], top["start_s"], top["end_s"]
                )
            except VideoError as err:
                problem = f"{err.code}: {err.detail}"
            except Exception as err:  # storage, codec or detector trouble: a placeholder
                _LOG.warning("no face crops for %s: %s", video.video_uri, err)
                problem = f"{type(err).__name__}: {err}"
        return render(request, "_faces.html", faces=_data_uris(found), problem=problem)

    # --- claims and decisions ---

    async def form_of(request: Request) -> dict[str, str]:
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        await form.close()
        if not settings.tokens.valid(request.state.reviewer, fields.get("csrf")):
            raise Refusal(
                403,
                "Form refused",
                "the form's security token is missing or wrong (was it sent from another site, "
                "or is the page older than the app?); nothing was recorded. Reload the page",
            )
        return fields

    async def json_of(request: Request) -> dict[str, Any]:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise Refusal(415, "JSON only", "send a JSON body with Content-Type: application/json")
        try:
            body = await request.json()
        except ValueError as err:
            raise Refusal(400, "Bad JSON", f"the body is not JSON: {err}") from err
        if not isinstance(body, dict):
            raise Refusal(400, "Bad JSON", "the body must be a JSON object")
        return body

    def as_shown(seen: ReviewState, expect: Any) -> None:
        """Refuse (409) when the video no longer holds the status the moderator's page showed."""
        if expect and seen.status != str(expect):
            raise ReviewConflict(
                f"{seen.video_uri} was decided meanwhile: it is {seen.status} now, not {expect} "
                "as your page showed; nothing was recorded. Reload the page to see the decision"
            )

    def claim(reviewer: str, uri: str, expect: str | None) -> None:
        try:
            seen = read_state(engine, uri)
            as_shown(seen, expect)
            claim_video(engine, uri, reviewer, settings.claim_ttl_s, seen)
        except NotFlagged as err:
            raise Refusal(404, "No such video", str(err)) from err
        except ReviewConflict as err:
            raise Refusal(409, "Someone else has this video", str(err)) from err

    def decide(reviewer: str, uri: str, decision: Any, note: Any, expect: Any) -> None:
        if not isinstance(note, str) or not note.strip():
            raise Refusal(400, "A note is required", "say why in the note; nothing was recorded")
        review = Review(uri, str(decision), reviewer, note)
        try:
            check_review(review)
            seen = read_state(engine, uri)
            as_shown(seen, expect)
            record_review(engine, review, seen, require_claim=True)
        except NotFlagged as err:
            raise Refusal(404, "No such video", str(err)) from err
        except ReviewConflict as err:
            raise Refusal(409, "Decision refused", str(err)) from err
        except ValueError as err:
            raise Refusal(400, "Decision refused", f"{err}; nothing was recorded") from err
        _LOG.info("%s decided %s: %s", reviewer, uri, review.decision)

    def panel(request: Request, vid: str, status: int, message: str | None, kind: str = "error"):
        """The decision panel (and, out of band, the history) as htmx swaps it in, or the whole
        page for a browser without script."""
        video = detail_of(vid)
        if request.headers.get("hx-request") != "true":
            if status < 400:
                return RedirectResponse(f"/videos/{vid}", status_code=303)
            return render(request, "error.html", status, title="Refused", message=message)
        return render(
            request,
            "_decision.html",
            status,
            video=video,
            message=message,
            message_kind=kind,
            oob=True,
        )

    async def on_page(request: Request, vid: str, act) -> Response:
        try:
            fields = await form_of(request)
            uri = detail_of(vid).video_uri
            message = await run_in_threadpool(act, request.state.reviewer, uri, fields)
        except Refusal as err:
            if err.status in (403, 404):
                raise
            return panel(request, vid, err.status, err.message)
        return panel(request, vid, 200, message, "done")

    @app.post("/videos/{vid}/claim")
    async def claim_on_page(request: Request, vid: str):
        def act(reviewer: str, uri: str, fields: dict[str, str]) -> str:
            claim(reviewer, uri, fields.get("expect"))
            return "Claimed: the video is yours to decide."

        return await on_page(request, vid, act)

    @app.post("/videos/{vid}/release")
    async def release_on_page(request: Request, vid: str):
        def act(reviewer: str, uri: str, fields: dict[str, str]) -> str:
            release_claim(engine, uri, reviewer)
            return "Released: anyone may claim the video now."

        return await on_page(request, vid, act)

    @app.post("/videos/{vid}/decision")
    async def decide_on_page(request: Request, vid: str):
        def act(reviewer: str, uri: str, fields: dict[str, str]) -> str:
            decision = fields.get("decision", "")
            decide(reviewer, uri, decision, fields.get("note"), fields.get("expect"))
            return f"Recorded: {decision}."

        return await on_page(request, vid, act)

    @app.post("/api/videos/{vid}/claim")
    async def claim_api(request: Request, vid: str):
        body = await json_of(request)
        uri = detail_of(vid).video_uri
        await run_in_threadpool(claim, request.state.reviewer, uri, body.get("expect"))
        return detail_of(vid).as_json()

    @app.post("/api/videos/{vid}/decision")
    async def decision_api(request: Request, vid: str):
        body = await json_of(request)
        uri = detail_of(vid).video_uri
        await run_in_threadpool(
            decide,
            request.state.reviewer,
            uri,
            body.get("decision"),
            body.get("note"),
            body.get("expect"),
        )
        return detail_of(vid).as_json()

    # --- check one video ---

    def check_render(request: Request, status: int = 200, **context: Any) -> HTMLResponse:
        """The check page: the form (offering to keep the video where the app keeps uploads),
        and a verdict or a refusal."""
        checker, result = settings.checker, context.get("result")
        return render(
            request,
            "check.html",
            status,
            available=checker is not None,
            keeps=settings.keep_uploads is not None,
            max_mb=round(checker.max_upload_bytes / (1 << 20)) if checker else 0,
            result=result,
            faces=_data_uris(list(result.faces)) if result is not None else [],
            message=context.get("message"),
        )

    @app.get("/check", response_class=HTMLResponse)
    def check_page(request: Request):
        return check_render(request)

    @app.post("/check", response_class=HTMLResponse)
    async def check_upload(request: Request):
        checker = settings.checker
        if checker is None:
            raise Refusal(503, "Checking is off", "start the app with --model BUNDLE to check")
        form = await request.form(max_files=1, max_fields=4)
        try:
            if not settings.tokens.valid(request.state.reviewer, form.get("csrf")):
                raise Refusal(403, "Form refused", "the form's security token is missing or wrong")
            upload = form.get("video")
            if upload is None or isinstance(upload, str):
                return check_render(request, 400, message="choose a video file")
            name = Path(upload.filename or "upload").name
            with upload_dir() as tmp:
                try:
                    path = await checker.receive(_chunks(upload), Path(name).suffix, Path(tmp))
                except TooLarge as err:
                    return check_render(request, 413, message=str(err))
                except ValueError as err:
                    return check_render(request, 400, message=str(err))
                result = await run_in_threadpool(checker.check, path, name, pictures)
                if form.get("keep") == "yes" and result.status == "scored":
                    if settings.keep_uploads is None:
                        raise Refusal(400, "Not kept", "this app keeps no uploads")
                    result = await run_in_threadpool(
                        keep, engine, result, path, settings.keep_uploads
                    )
                    _LOG.info("%s kept %s as %s", request.state.reviewer, name, result.kept_as)
        finally:
            await form.close()
        status = 200 if result.status == "scored" else 422
        return check_render(request, status, result=result)

    return app


async def _chunks(upload, size: int = 1 << 20):
    while chunk := await upload.read(size):
        yield chunk


def _data_uris(faces: list[tuple[float, bytes]]) -> list[tuple[float, str]]:
    return [(at, "data:image/jpeg;base64," + b64encode(data).decode()) for at, data in faces]
