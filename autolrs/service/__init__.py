"""AutoLRS as a network service: the search in a server, the training loop anywhere.

The paper's own design splits AutoLRS in two: a server holds the search and a client in the
training loop obeys it. Here the server (``autolrs serve``, :mod:`autolrs.service.app`) keeps one
:class:`~autolrs.core.controller.Controller` per job behind a JSON-over-HTTP protocol
(docs/service.md), persisted in SQLite; :class:`RemoteController` is a drop-in for the in-process
controller that talks to it.

Importing this package needs only the standard library and the core: the server's own
dependencies (FastAPI, uvicorn) come with ``pip install 'autolrs[service]'`` and are imported by
:mod:`autolrs.service.app` alone.
"""

from autolrs.service.client import RemoteController, RemoteControllerFactory

__all__ = ["RemoteController", "RemoteControllerFactory"]
