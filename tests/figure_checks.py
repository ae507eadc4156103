"""Checks on rendered matplotlib figures: every drawn text lies inside the figure, labels do not collide."""

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text


def rendered_texts(fig) -> list[tuple[str, object]]:
    """Draw ``fig`` with Agg; (text, window extent) of every non-empty text actually drawn (tick labels
    outside the view limits and annotations outside their axes are not drawn, so not listed)."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    drawn, draw = [], Text.draw

    def recording(self, renderer):
        drawn.append(self)
        return draw(self, renderer)

    Text.draw = recording
    try:
        fig.draw(renderer)
    finally:
        Text.draw = draw
    return [(t.get_text(), t.get_window_extent(renderer)) for t in drawn if t.get_visible() and t.get_text().strip()]


def text_box(fig, text: str):
    """The window extent of the drawn text ``text`` (exactly one must be drawn)."""
    [box] = [box for shown, box in rendered_texts(fig) if shown == text]
    return box


def texts_outside(fig, *, tolerance: float = 1.0) -> list[str]:
    """The drawn texts of ``fig`` whose box leaves the figure (by more than ``tolerance`` pixels)."""
    width, height = fig.bbox.width, fig.bbox.height
    return [text for text, box in rendered_texts(fig)
            if box.x0 < -tolerance or box.y0 < -tolerance or box.x1 > width + tolerance
            or box.y1 > height + tolerance]


def colliding(boxes: list) -> list[tuple[int, int]]:
    """Index pairs of boxes that overlap."""
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
