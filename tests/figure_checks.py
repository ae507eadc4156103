"""Checks on rendered matplotlib figures: every drawn text lies inside the figure, labels do not collide."""

from matplotlib.backends.backend_agg import FigureCanvasAgg


def rendered_texts(fig) -> dict[str, object]:
    """Draw ``fig`` with Agg; {text: window extent} of every text actually drawn (ticks outside the view
    limits are not, so they are not listed)."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    drawn = []
    draw_text = renderer.draw_text

    def recording(gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if mtext is not None and mtext not in drawn:
            drawn.append(mtext)
        return draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    renderer.draw_text = recording
    fig.draw(renderer)
    return {t.get_text(): t.get_window_extent(renderer) for t in drawn if t.get_text().strip()}


def texts_outside(fig, *, tolerance: float = 1.0) -> list[str]:
    """The drawn texts of ``fig`` whose box leaves the figure (by more than ``tolerance`` pixels)."""
    width, height = fig.bbox.width, fig.bbox.height
    return [text for text, box in rendered_texts(fig).items()
            if box.x0 < -tolerance or box.y0 < -tolerance or box.x1 > width + tolerance
            or box.y1 > height + tolerance]


def colliding(boxes: list) -> list[tuple[int, int]]:
    """Index pairs of boxes that overlap."""
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
