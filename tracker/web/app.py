"""The staff web app (starlette): sign-in, Today, Alerts, Patient. Each page is one service call in one
transaction, as a CLI command is (tracker/services); the signed-in user's name is the Clinic's `user`, so
every action is audited under it.

Paths carry internal ids, never MRNs or names (URLs end up in logs and browser histories). Sessions live
in a signed cookie (starlette's SessionMiddleware: HttpOnly, SameSite=Strict, Secure over TLS) holding the
account id, a random session id, a CSRF token and when it was last used (the idle timeout); the database
keeps each session (`web_session`, a hash of its id, when it began), and signing out ends it there for every
copy of the cookie; a session lasts at most `[web] session_max_hours`, and each sign-in prunes the rows no
request can use again."""

from __future__ import annotations

import datetime as dt
import secrets
from contextlib import contextmanager
from importlib import resources

from sqlmodel import Session, select
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from tracker.core.accounts import Lockout, may_act
from tracker.dates import today as clinic_today
from tracker.dates import utcnow
from tracker.db.tables import AuditEvent, Patient, StaffUser, WebSession
from tracker.errors import TrackerError
from tracker.services.feeds import token_hash  # a session id is kept as a feed token is: its SHA-256
from tracker.web.security import AddressLimiter, SecurityHeaders, csrf_ok, csrf_token, idle_expired

SESSION_COOKIE = "tracker_session"
AUDIT_SHOWN = 100  # the patient page's audit trail: the newest entries


class WebApp:
    """What the pages share: the database, the protocols, the settings."""

    def __init__(self, engine, library, settings):
        self.engine, self.library, self.settings = engine, library, settings
        self.lockout = Lockout(settings.web.lockout_failures, settings.web.lockout_minutes)
        self.limiter = AddressLimiter()
        env_dir = resources.files("tracker.web") / "templates"
        self.templates = Jinja2Templates(directory=str(env_dir))
        self.templates.env.autoescape = True  # stored text is always shown as text, never as markup
        from tracker.services.row_shapes import alert_text

        self.templates.env.globals["alert_text"] = alert_text  # a message with its suggestions named once

    @contextmanager
    def clinic(self, user: str, *, write: bool):
        """A Clinic in one transaction (committed when the block ends, rolled back on an error)."""
        from tracker.db.engine import for_writing
        from tracker.services.context import Clinic

        bind = for_writing(self.engine) if write else self.engine
        with Session(bind, expire_on_commit=False) as session:
            try:
                yield Clinic(session, self.library, self.settings, clinic_today(self.settings.timezone), user)
                session.commit()
            except BaseException:
                session.rollback()
                raise


def _web(request: Request) -> WebApp:
    return request.app.state.web


def render(request: Request, template: str, status: int = 200, **context) -> Response:
    web = _web(request)
    context.setdefault("user", getattr(request.state, "user", None))
    context["csrf"] = csrf_token(request.session)
    return web.templates.TemplateResponse(request, template, context, status_code=status)


def session_lifetime(settings) -> dt.timedelta:
    """The longest a session lasts however much it is used (`[web] session_max_hours`)."""
    return dt.timedelta(hours=settings.web.session_max_hours)


# Rows are pruned only this long after no request can use them: the web servers of a multi-workstation
# clinic (one database) need not agree on the time to the second.
PRUNE_MARGIN = dt.timedelta(days=1)
PRUNE_AT_ONCE = 1000  # rows removed by one sign-in at most (the first sign-in after an upgrade finds many)


def prune_sessions(db: Session, settings, now: dt.datetime) -> None:
    """Delete the `web_session` rows no request can use again: ended (signed out) or started longer ago than
    a session lasts (and PRUNE_MARGIN). One statement; run at each sign-in, so the table holds about the
    sessions of the last `session_max_hours`."""
    from sqlalchemy import delete, or_

    dead = (select(WebSession.id)
            .where(or_(WebSession.ended_at.is_not(None),
                       WebSession.started_at < now - session_lifetime(settings) - PRUNE_MARGIN))
            .limit(PRUNE_AT_ONCE))
    db.execute(delete(WebSession).where(WebSession.id.in_(dead.scalar_subquery())))


def signed_in(request: Request):
    """The signed-in account as (id, name, role), or None (no session, idle too long, older than
    `session_max_hours`, signed out, disabled since)."""
    session = request.session
    now = utcnow()
    if "uid" not in session or not isinstance(session.get("sid"), str):
        session.clear()
        return None
    if idle_expired(session, now, _web(request).settings.web.idle_timeout_minutes):
        session.clear()
        return None
    web = _web(request)
    with Session(web.engine) as db:
        row = db.exec(select(StaffUser).join(WebSession, WebSession.user_id == StaffUser.id)
                      .where(WebSession.sid_hash == token_hash(session["sid"]), WebSession.ended_at.is_(None),
                             WebSession.started_at > now - session_lifetime(web.settings),
                             StaffUser.id == session["uid"])).first()
    if row is None or row.disabled:
        session.clear()
        return None
    session["seen"] = int(now.timestamp())
    return row.id, row.name, row.role


def page(handler):
    """A page for signed-in users only; others go to the sign-in page. Database work runs in the thread
    pool (the services are synchronous)."""
    import inspect

    from starlette.concurrency import run_in_threadpool

    async def endpoint(request: Request):
        user = await run_in_threadpool(signed_in, request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        request.state.user = {"id": user[0], "name": user[1], "role": user[2], "may_act": may_act(user[2])}
        if inspect.iscoroutinefunction(handler):
            return await handler(request)
        return await run_in_threadpool(handler, request)

    return endpoint


async def _form(request: Request) -> dict | None:
    """The posted form, or None when its CSRF token is missing or wrong."""
    form = await request.form(max_files=0, max_fields=20)
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    return values if csrf_ok(request.session, values.get("csrf_token")) else None


def refused(request: Request, status: int, message: str) -> Response:
    return render(request, "refused.html", status=status, message=message)


# --- sign-in ---------------------------------------------------------------------------------------------


def login_page(request: Request):
    return render(request, "login.html", error=None)


async def login(request: Request):
    from tracker.services.users import SignInRefused, sign_in

    web = _web(request)
    form = await _form(request)
    if form is None:
        return refused(request, 403, "The form had expired or did not come from this site; reload the page.")
    address = request.client.host if request.client else "?"
    now = utcnow()
    if web.limiter.blocked(address, now):
        return render(request, "login.html", status=429, error="Too many failed sign-ins; try again later.")
    name, password = form.get("name", "")[:64], form.get("password", "")[:1024]

    def attempt():
        from tracker.db.engine import for_writing

        with Session(for_writing(web.engine), expire_on_commit=False) as session:
            try:
                row = sign_in(session, name, password, web.lockout, now)
            except SignInRefused:
                session.commit()  # a failure's count, a lockout and their audit rows are kept
                return None
            sid = secrets.token_urlsafe(32)
            prune_sessions(session, web.settings, now)
            session.add(WebSession(sid_hash=token_hash(sid), user_id=row.id, started_at=now))
            session.commit()
            return row.id, sid

    from starlette.concurrency import run_in_threadpool

    signed = await run_in_threadpool(attempt)
    if signed is None:
        web.limiter.failed(address, now)
        # One message for every refusal, so the page does not tell which names exist or are locked.
        return render(request, "login.html", status=401,
                      error="Sign-in failed: wrong name or password, or the account is locked or disabled.")
    request.session.clear()  # a fresh session (and CSRF token) on sign-in: no session fixation
    request.session.update({"uid": signed[0], "sid": signed[1], "seen": int(now.timestamp())})
    csrf_token(request.session)
    return RedirectResponse("/today", status_code=303)


async def logout(request: Request):
    from starlette.concurrency import run_in_threadpool

    form = await _form(request)
    if form is None:
        return refused(request, 403, "The form had expired or did not come from this site; reload the page.")
    sid = request.session.get("sid")
    request.session.clear()  # this browser's copy, whatever follows
    if isinstance(sid, str):
        await run_in_threadpool(end_session, _web(request).engine, sid)
    return RedirectResponse("/login", status_code=303)


def end_session(engine, sid: str) -> None:
    """Sign out: the session's row ends, so any copy of its cookie is refused from now on (audited)."""
    from sqlalchemy import update

    from tracker.db.engine import for_writing
    from tracker.services import audit

    with Session(for_writing(engine)) as db:
        row = db.exec(select(WebSession.id, StaffUser.id, StaffUser.name)
                      .join(StaffUser, StaffUser.id == WebSession.user_id)
                      .where(WebSession.sid_hash == token_hash(sid), WebSession.ended_at.is_(None))).first()
        if row is None:
            return  # ended already (signed out in another tab)
        db.execute(update(WebSession).where(WebSession.id == row[0]).values(ended_at=utcnow()))
        audit.record(db, row[2], "user.logout", "staff_user", row[1])
        db.commit()



def home(request: Request):
    return RedirectResponse("/today", status_code=303)


# --- pages -----------------------------------------------------------------------------------------------


def _patient_ids(session, mrns) -> dict[str, int]:
    """Internal ids of the MRNs shown, for links (paths carry ids, never MRNs)."""
    mrns, out = sorted({m for m in mrns if m}), {}
    for start in range(0, len(mrns), 500):
        out.update(dict(session.exec(select(Patient.mrn, Patient.id).where(Patient.mrn.in_(mrns[start:start + 500]))).all()))
    return out


TODAY_FILTERS = ("drug", "clinician", "from", "to")


def today_page(request: Request):
    """Today, filtered by the query string (drug, clinician, due from/to: no patient data), each section paged
    (`<section>_page`); `print=1`: every row of the filter on one page, for printing."""
    from urllib.parse import urlencode

    from tracker.services.today import SECTIONS, TodayFilter, page_number, today_view

    web, params = _web(request), request.query_params
    given = {name: params.get(name, "").strip() for name in TODAY_FILTERS}
    everything = params.get("print") == "1"
    try:
        wanted = TodayFilter(drug=given["drug"] or None, clinician=given["clinician"] or None,
                             due_from=form_date(given["from"], "from") if given["from"] else None,
                             due_to=form_date(given["to"], "to") if given["to"] else None)
        pages = {name: page_number(params.get(f"{name}_page"), f"{name}_page") for name in SECTIONS}
        with web.clinic(request.state.user["name"], write=False) as clinic:
            view = today_view(clinic, wanted, pages, everything=everything)
    except TrackerError as exc:
        return refused(request, {3: 404}.get(exc.exit_code, 400), str(exc))
    kept = {name: value for name, value in given.items() if value}

    def link(**extra) -> str:
        """/today with the current filter (and each section's page) and `extra` over them."""
        query = {**kept, **{f"{n}_page": view["sections"][n].page for n in SECTIONS
                            if view["sections"][n].page > 1}, **extra}
        return "/today?" + urlencode({k: v for k, v in query.items() if v not in (None, "", 1)})

    _log_access(request, "access.web.today", detail={"page": "today", **kept})
    return render(request, "today.html", **view, given=given, everything=everything, link=link,
                  print_link="/today?" + urlencode({**kept, "print": 1}), page_size=None if everything else 50)


def alerts_page(request: Request, *, status: int = 200, error: str | None = None, done: str | None = None):
    from tracker.services.alerts import MAX_SNOOZE_DAYS
    from tracker.services.listings import review_alerts

    web = _web(request)
    with web.clinic(request.state.user["name"], write=False) as clinic:
        evaluated, rows = review_alerts(clinic, None, include_all=True)
        rows = [r for r in rows if r["status"] != "resolved"]
        ids = _patient_ids(clinic.session, [r["mrn"] for r in rows])
        today = clinic.today
    _log_access(request, "access.web.alerts", detail={"page": "alerts"})
    return render(request, "alerts.html", status=status, alerts=rows, evaluated=evaluated, ids=ids, error=error,
                  done=done or request.query_params.get("done"), today=today,
                  snooze_min=today + dt.timedelta(days=1), snooze_max=today + dt.timedelta(days=MAX_SNOOZE_DAYS))


ACTIONS = {"ack": "acknowledged", "snooze": "snoozed", "resolve": "resolved"}


async def alert_action(request: Request):
    from starlette.concurrency import run_in_threadpool

    from tracker.services import alerts as service

    form = await _form(request)
    if form is None:
        return refused(request, 403, "The form had expired or did not come from this site; reload the page.")
    user = request.state.user
    if not user["may_act"]:
        return refused(request, 403, f"{user['name']} has read-only access: alerts cannot be changed.")
    action, alert_id = request.path_params["action"], request.path_params["alert_id"]
    if action not in ACTIONS:  # before anything is read or changed
        return refused(request, 404, "No such action on an alert.")
    web = _web(request)

    def act():
        with web.clinic(user["name"], write=True) as clinic:
            if action == "ack":
                return service.acknowledge(clinic, alert_id, form.get("note", ""))
            if action == "snooze":
                return service.snooze(clinic, alert_id, form_date(form.get("until", ""), "until"),
                                      form.get("reason", ""))
            return service.resolve(clinic, alert_id, form.get("reason", ""))

    try:
        await run_in_threadpool(act)
    except TrackerError as exc:
        status = {2: 400, 3: 404, 4: 409}.get(exc.exit_code, 400)
        return await run_in_threadpool(alerts_page, request, status=status, error=str(exc))
    return RedirectResponse(f"/alerts?done={ACTIONS[action]}+{alert_id}", status_code=303)


def form_date(value: str, field: str) -> dt.date:
    from tracker.errors import InputError

    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise InputError(field, value, "expected a date like 2026-01-31") from None


def patient_page(request: Request):
    from tracker.services.audit import patient_events
    from tracker.services.listings import patient_calendar
    from tracker.services.patient_view import patient_summary
    from tracker.web.charts import response_charts, trend_charts

    web = _web(request)
    with web.clinic(request.state.user["name"], write=False) as clinic:
        patient = clinic.session.get(Patient, request.path_params["patient_id"])
        if patient is None:
            return refused(request, 404, "No such patient.")
        summary = patient_summary(clinic, patient.mrn, recent=10_000, upcoming=0)
        calendar = patient_calendar(clinic, patient.mrn, None, None)
        charts = trend_charts(clinic, patient, summary["results"], summary["courses"])
        responses = response_charts(clinic, patient, summary["courses"], calendar)
        # The patient's own events, as `tracker audit --patient` picks them: by the MRN each was recorded
        # under and when, since an MRN given up may since belong to another patient.
        trail = clinic.session.exec(select(AuditEvent.at, AuditEvent.user, AuditEvent.action, AuditEvent.entity,
                                           AuditEvent.entity_id)
                                    .where(patient_events(clinic.session, patient.mrn))
                                    .order_by(AuditEvent.id.desc()).limit(AUDIT_SHOWN)).all()
        today = clinic.today
    _log_access(request, "access.web.patient", patient_id=patient.id, detail={"page": "patient"})
    return render(request, "patient.html", p=summary["patient"], summary=summary, calendar=calendar,
                  charts=charts, responses=responses, today=today, trail=trail, audit_shown=AUDIT_SHOWN)


def _log_access(request: Request, action: str, *, patient_id: int | None = None, detail: dict) -> None:
    """Record that the signed-in user was shown patient data (`access.*`, as the CLI's reads are): one patient's
    page, or the whole clinic's lists. A failure to record is logged for the operator (never the data), and
    the page is still shown, as the CLI only warns."""
    from tracker.services.access import record_access

    if request.method == "HEAD":  # headers only: nothing was shown (the feed server records no HEAD either)
        return
    problem = record_access(_web(request).engine, request.state.user["name"], action, patient_id=patient_id,
                            detail=detail)
    if problem:
        import logging

        logging.getLogger("tracker.web").warning("access event not recorded: %s", problem)


def protocols_page(request: Request):
    """Every protocol in the library (no patient data: nothing read from the database)."""
    from tracker.services.schedule_view import protocol_summaries

    return render(request, "protocols.html", protocols=protocol_summaries(_web(request).library))


def protocol_page(request: Request):
    """One protocol's whole rule set, timeline and sources: what `tracker schedules show` lists
    (services/schedule_view.py), each rule with its sources or "clinic default"."""
    from tracker.core.coded import drug_codes_text
    from tracker.core.terms import CLINIC_DEFAULT
    from tracker.services.schedule_view import protocol_origin, protocol_rules, protocol_timeline

    library = _web(request).library
    protocol = library.protocols.get(request.path_params["drug"])
    if protocol is None:
        return refused(request, 404, "No such protocol.")
    rules = protocol_rules(protocol, library.vocabulary)
    return render(request, "protocol.html", protocol=protocol, origin=protocol_origin(protocol),
                  codes=drug_codes_text(protocol), rules=[r for r in rules if r["section"] != "threshold"],
                  thresholds=[r for r in rules if r["section"] == "threshold"],
                  timeline=protocol_timeline(protocol, PROTOCOL_WEEKS), weeks=PROTOCOL_WEEKS,
                  clinic_default=CLINIC_DEFAULT)


PROTOCOL_WEEKS = 52  # the protocol page's timeline (`tracker schedules show`'s default)


def quality_page(request: Request):
    from tracker.web.quality import quality_view

    status, context = quality_view(_web(request), request.state.user["name"], request.query_params)
    return render(request, "quality.html", status=status, **context)


class RowId(Convertor):
    """A row id in a path: digits that fit the databases' 64-bit integers (longer is no row: 404, not a
    driver's overflow)."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", RowId())


def database_refused(request: Request, exc: Exception) -> Response:
    """Another writer held the database too long, or got there first: the CLI's one-line refusal (503, 409)
    instead of a server error. Any other database error stays one (logged, 500)."""
    from tracker.db.engine import lock_conflict

    reason = lock_conflict(exc)
    if reason is None:
        raise exc
    return refused(request, 503 if reason.startswith("database busy") else 409, reason)


def create_app(engine, library, settings, secret: str, *, https: bool = False) -> Starlette:
    """The web app over `engine`; `secret` signs the session cookies; `https`: cookies marked Secure (and
    HSTS sent), for TLS served by uvicorn or a reverse proxy in front."""
    idle = settings.web.idle_timeout_minutes * 60
    routes = [
        Route("/", home),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/today", page(today_page)),
        Route("/alerts", page(alerts_page)),
        Route("/alerts/{alert_id:id}/{action:str}", page(alert_action), methods=["POST"]),
        Route("/patients/{patient_id:id}", page(patient_page)),
        Route("/protocols", page(protocols_page)),
        Route("/protocols/{drug:str}", page(protocol_page)),
        Route("/quality", page(quality_page)),
        Mount("/static", StaticFiles(directory=str(resources.files("tracker.web") / "static")), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders, https=https),
        Middleware(SessionMiddleware, secret_key=secret, session_cookie=SESSION_COOKIE, max_age=idle,
                   same_site="strict", https_only=https),
    ]
    from sqlalchemy.exc import IntegrityError, OperationalError

    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={OperationalError: database_refused, IntegrityError: database_refused})
    app.state.web = WebApp(engine, library, settings)
    return app
