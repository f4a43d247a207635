"""Vector drawings in a session's output: a canvas and a turtle, replayed by the client.

Importable inside every kernel (``from portside.drawing import Canvas, Turtle``).  Drawing
operations are recorded as commands; ``Canvas.update()`` (and ``Turtle`` methods, which update
as they go) emit the pending commands as one ``application/x-sorna-drawing`` output whose
content is a JSON list, the format the examples page documents.  Each command is a list:

* ``[canvas_id, "canvas", width, height, bg_color, fg_color]`` creates a canvas;
* ``[canvas_id, "obj", obj_id, [kind, *params]]`` adds an object: ``["line", x0, y0, x1, y1,
  color]``, ``["circle", x, y, radius, border, fill, angle]``, ``["rect", left, top, width,
  height, border, fill, angle]``, ``["triangle", x1, y1, x2, y2, x3, y3, border, fill, angle]``,
  ``["text", x, y, text, color]``;
* ``[canvas_id, "update", obj_id, property, value]`` changes an object (a turtle moving);
* ``[canvas_id, "bgcolor", color]``, ``[canvas_id, "begin-fill", color]``,
  ``[canvas_id, "end-fill"]`` and ``[canvas_id, "stop-anim"]``.

Colors are ``#rrggbbaa`` strings.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

MIME_TYPE = "application/x-sorna-drawing"
_canvas_ids = itertools.count()


@dataclass(frozen=True, slots=True)
class Color:
    red: int
    green: int
    blue: int
    alpha: int = 255

    def to_hex(self) -> str:
        return f"#{self.red:02x}{self.green:02x}{self.blue:02x}{self.alpha:02x}"

    @classmethod
    def from_hex(cls, value: str) -> Color:
        value = value.lstrip("#")
        if len(value) == 6:
            value += "ff"
        if len(value) != 8:
            raise ValueError(f"{value!r} is not a #rrggbb or #rrggbbaa color")
        r, g, b, a = (int(value[i : i + 2], 16) for i in (0, 2, 4, 6))
        return cls(r, g, b, a)


class Colors:
    Transparent = Color(255, 255, 255, 0)
    Black = Color(0, 0, 0)
    Gray = Color(128, 128, 128)
    White = Color(255, 255, 255)
    Red = Color(255, 0, 0)
    Green = Color(0, 255, 0)
    Blue = Color(0, 0, 255)
    Yellow = Color(255, 255, 0)
    Cyan = Color(0, 255, 255)
    Magenta = Color(255, 0, 255)


ColorLike = Color | str


def _hex(color: ColorLike) -> str:
    return color.to_hex() if isinstance(color, Color) else Color.from_hex(color).to_hex()


def _emit(commands: list[list[Any]]) -> None:
    from IPython.display import publish_display_data

    publish_display_data({MIME_TYPE: json.dumps(commands)})  # type: ignore[no-untyped-call]


class Canvas:
    """A drawing surface; nothing is shown until ``update()``."""

    def __init__(
        self,
        width: int,
        height: int,
        bg_color: ColorLike = Colors.White,
        fg_color: ColorLike = Colors.Black,
    ) -> None:
        self.id = next(_canvas_ids)
        self.width, self.height = width, height
        self.fg_color = _hex(fg_color)
        self._next_obj = itertools.count()
        self._pending: list[list[Any]] = [
            [self.id, "canvas", width, height, _hex(bg_color), self.fg_color]
        ]

    def _add(self, shape: list[Any]) -> int:
        obj_id = next(self._next_obj)
        self._pending.append([self.id, "obj", obj_id, shape])
        return obj_id

    def update(self) -> None:
        """Shows everything drawn since the last update."""
        if self._pending:
            _emit(self._pending)
            self._pending = []

    def show(self) -> None:
        self.update()

    def create_line(
        self, x0: float, y0: float, x1: float, y1: float, color: ColorLike | None = None
    ) -> int:
        return self._add(["line", x0, y0, x1, y1, _hex(color) if color else self.fg_color])

    def create_circle(
        self,
        x: float,
        y: float,
        radius: float,
        border: ColorLike | None = None,
        fill: ColorLike = Colors.Transparent,
        angle: float = 0,
    ) -> int:
        return self._add(
            ["circle", x, y, radius, _hex(border) if border else self.fg_color, _hex(fill), angle]
        )

    def create_rectangle(
        self,
        left: float,
        top: float,
        width: float,
        height: float,
        border: ColorLike | None = None,
        fill: ColorLike = Colors.Transparent,
        angle: float = 0,
    ) -> int:
        return self._add(
            [
                "rect",
                left,
                top,
                width,
                height,
                _hex(border) if border else self.fg_color,
                _hex(fill),
                angle,
            ]
        )

    def create_triangle(
        self,
        x1: float,
        y1: float,
        x2: float,
        y2: float,
        x3: float,
        y3: float,
        border: ColorLike | None = None,
        fill: ColorLike = Colors.Transparent,
        angle: float = 0,
    ) -> int:
        return self._add(
            [
                "triangle",
                x1,
                y1,
                x2,
                y2,
                x3,
                y3,
                _hex(border) if border else self.fg_color,
                _hex(fill),
                angle,
            ]
        )

    def create_text(self, x: float, y: float, text: str, color: ColorLike | None = None) -> int:
        return self._add(["text", x, y, text, _hex(color) if color else self.fg_color])

    def set_property(self, obj_id: int, prop: str, value: Any) -> None:
        self._pending.append([self.id, "update", obj_id, prop, value])

    def bgcolor(self, color: ColorLike) -> None:
        self._pending.append([self.id, "bgcolor", _hex(color)])

    def begin_fill(self, color: ColorLike) -> None:
        self._pending.append([self.id, "begin-fill", _hex(color)])

    def end_fill(self) -> None:
        self._pending.append([self.id, "end-fill"])

    def stop_animation(self) -> None:
        self._pending.append([self.id, "stop-anim"])


class Turtle:
    """Logo's turtle on a canvas: it starts in the middle, facing right (east)."""

    def __init__(self, canvas: Canvas, *, auto_update: bool = True) -> None:
        self.canvas = canvas
        self.x, self.y = canvas.width / 2, canvas.height / 2
        self.heading = 0.0
        self.pen = True
        self.color: ColorLike = canvas.fg_color
        self.auto_update = auto_update
        self._sprite = canvas.create_circle(self.x, self.y, 4, border=self.color, fill=self.color)
        self._changed()

    def _changed(self) -> None:
        if self.auto_update:
            self.canvas.update()

    def forward(self, distance: float) -> None:
        radians = math.radians(self.heading)
        x = self.x + distance * math.cos(radians)
        y = self.y - distance * math.sin(radians)
        if self.pen:
            self.canvas.create_line(self.x, self.y, x, y, self.color)
        self.x, self.y = x, y
        self.canvas.set_property(self._sprite, "x", round(x, 6))
        self.canvas.set_property(self._sprite, "y", round(y, 6))
        self._changed()

    def backward(self, distance: float) -> None:
        self.forward(-distance)

    def left(self, degrees: float) -> None:
        self.heading = (self.heading + degrees) % 360
        self.canvas.set_property(self._sprite, "angle", self.heading)
        self._changed()

    def right(self, degrees: float) -> None:
        self.left(-degrees)

    def penup(self) -> None:
        self.pen = False

    def pendown(self) -> None:
        self.pen = True

    def pos(self) -> tuple[float, float]:
        return self.x, self.y

    def set_color(self, color: ColorLike) -> None:
        self.color = color

    def goto(self, x: float, y: float) -> None:
        if self.pen:
            self.canvas.create_line(self.x, self.y, x, y, self.color)
        self.x, self.y = x, y
        self.canvas.set_property(self._sprite, "x", x)
        self.canvas.set_property(self._sprite, "y", y)
        self._changed()
