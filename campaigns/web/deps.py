"""Request-scoped access to the process runtime and a database session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from campaigns.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(rt: RuntimeDep) -> Iterator[Session]:
    with rt.session() as session:
        yield session


#: "function" scope commits before the response is sent: a redirect after a save must never
#: reach the browser ahead of the commit it announces.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
