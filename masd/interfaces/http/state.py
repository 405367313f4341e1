"""What a route reads from the application it is served by: the node (``app.state.node``).

:func:`masd.interfaces.http.app.make_app` puts it there; a route asks for it with :data:`NodeDep`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from masd.node import Node

__all__ = ["NodeDep", "current_node"]


def current_node(request: Request) -> Node:
    """The node serving this request."""
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(current_node)]
