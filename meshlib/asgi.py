"""The mesh's server policies for ASGI apps (FastAPI, Starlette, any ASGI app).

    app = meshlib.asgi.MeshMiddleware(app, mesh=mesh)
    app.add_middleware(meshlib.asgi.MeshMiddleware, mesh=mesh)   # Starlette / FastAPI

The same policy list as ``mesh.grpc_server()`` applies (see :mod:`meshlib.serving`):
today the caller's deadline. ``policies=[...]`` applies a list of your own.
"""

from __future__ import annotations

from meshlib.transport.asgi_middleware import DeadlineMiddleware, MeshMiddleware

__all__ = ["DeadlineMiddleware", "MeshMiddleware"]
