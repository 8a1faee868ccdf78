"""tus concatenation: a final upload is the concatenation of complete partial uploads."""

from __future__ import annotations

import anyio

from chunkd.core import errors
from chunkd.core.engine import Engine
from chunkd.core.models import Session, SessionState
from chunkd.core.principal import Principal
from chunkd.core.store import SessionChanges


async def concatenate(engine: Engine, session_id: str, principal: Principal, parts: list[str]) -> Session:
    """Finish the open session ``session_id`` as the concatenation of the complete sessions ``parts``
    (tus final upload): their bytes become its published object through :meth:`Engine.compose` (no copy
    where the store assembles in place), and the session becomes committed with ``received == length``.

    Safe to race from several processes: a loser whose compose fails because the parts are already
    consumed finds the object in place and only marks the session (or returns it as it is).
    """
    session = await engine.get_session(session_id, principal=principal)
    if session.state is not SessionState.OPEN:
        return session
    try:
        await engine.compose(principal, parts, session.namespace, session.key)
    except (errors.SessionGone, errors.SessionNotFound, errors.SessionIncomplete, errors.Conflict,
            errors.InvalidRange):
        info = await engine.storage.stat(session.namespace, session.key)
        if info is None or info.size != session.length:
            raise
    for _ in range(20):
        session = await engine.get_session(session_id)
        if session.state is not SessionState.OPEN:
            return session
        try:
            session = await engine.change(session, SessionChanges(
                state=SessionState.COMMITTED, received=session.length, modified_at=engine.clock(),
                expires_at=engine.expiry_for(session)))
        except errors.Conflict:
            await anyio.sleep(0.01)
            continue
        await engine.emit("completed", session)
        await engine.emit("committed", session)
        return session
    raise errors.Conflict("the session is changing too fast to finish")
