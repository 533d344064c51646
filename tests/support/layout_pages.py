"""Generated pages with a layout: text in columns, ruled tables (merged cells too), Russian text with words that
have Latin look-alikes. Each page comes with what a reader would read off it, in a reader's order.

Everything is drawn with the DejaVu fonts (``fonts-dejavu``) at sizes, gaps and shapes the caller picks, so tests
and benchmarks can vary them rather than depend on one drawing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

from tests.support.documents import A4_150DPI, font

ENGLISH_PROSE = [
    "The committee met on Tuesday to review the annual budget and the plans for the new library wing.",
    "Members agreed that the reading rooms need better light and that the old shelves must be replaced.",
    "A local firm offered to donate furniture if the city pays for delivery and installation costs.",
    "Several residents asked whether the library could stay open later on weekdays during the exams.",
    "The treasurer reported that spending on books rose by eight percent compared with last year.",
    "Digital subscriptions now account for almost a third of all loans made by the central branch.",
    "Volunteers will run a small workshop on family history every second Saturday of the month.",
    "The architect presented two designs, one with a glass roof and one with a green terrace garden.",
    "Questions about parking were postponed until the traffic survey is finished in the spring.",
    "Children's events drew record crowds, especially the puppet theatre and the summer reading club.",
    "Staff training on the new catalogue system will take place before the end of November.",
    "The meeting closed with thanks to the volunteers who repaired the garden benches in August.",
    "Heating costs are expected to fall once the new windows are fitted on the northern side.",
    "A survey of visitors showed that most of them come on foot or by bicycle from nearby streets.",
]

RUSSIAN_PROSE = [
    "Совет директоров рассмотрел отчёт о работе предприятия за первое полугодие текущего года.",
    "Выручка выросла на двенадцать процентов благодаря новым контрактам с региональными партнёрами.",
    "Расходы на логистику остались на прежнем уровне, несмотря на рост цен на топливо и аренду складов.",
    "Отдел кадров сообщил о найме сорока сотрудников для нового производственного участка в Казани.",
    "Программа обучения персонала будет продолжена, а её бюджет увеличен на пятую часть.",
    "Было решено модернизировать систему учёта и перевести документооборот в электронный вид.",
    "Акционеры одобрили выплату дивидендов по итогам года в размере семи рублей на одну акцию.",
    "Комиссия по охране труда провела проверку цехов и не выявила серьёзных нарушений правил.",
    "Новый склад в Подмосковье введут в эксплуатацию до конца осени, если погода позволит.",
    "Заседание завершилось обсуждением планов на следующий год и выбором председателя комиссии.",
    "Поставки сырья из Сибири идут по графику, задержек по вине перевозчиков не отмечено.",
    "Служба поддержки клиентов отвечает на обращения в течение одного рабочего дня.",
]

#: Russian office text whose words are made of letters with Latin look-alikes (Папка, регистратор, ...), with
#: Latin product names, commands and units among them (PATH, HTTPS, USB, Excel) that must stay Latin.
RUSSIAN_LOOKALIKE_LINES = [
    "Папка-регистратор с арочным механизмом, картон, ширина корешка 75 мм.",
    "Скоросшиватель пластиковый, набор из пяти штук, цвет синий.",
    "Переменная окружения PATH задаёт каталоги, где оболочка ищет команды.",
    "Накопитель USB 3.0 объёмом 64 ГБ, корпус из металла.",
    "Сервер принимает запросы по протоколу HTTPS на порту 443.",
    "Отчёт сохранён в формате Excel и отправлен в бухгалтерию.",
    "Тетрадь общая, 96 листов, клетка, обложка картон.",
    "Ручка шариковая, синяя, упаковка 50 штук, артикул TX-200.",
    "Короб архивный, гофрокартон, размер 320 на 250 мм.",
    "Сахар-песок, мешок 5 кг, сорт высший, ГОСТ 33222.",
    "Конверт почтовый C4, отрывная лента, белый, 250 штук.",
    "Топор туристический, рукоять из стеклопластика, вес 1,2 кг.",
]

INVOICE_HEADER = ["№", "Наименование товара", "Кол-во", "Ед.", "Цена, руб.", "Сумма, руб."]
INVOICE_ITEMS = [
    ("Папка-регистратор 75 мм", "12", "шт", "245,00", "2 940,00"),
    ("Бумага офисная A4, 500 листов", "20", "пач", "389,50", "7 790,00"),
    ("Скоросшиватель картонный", "50", "шт", "18,40", "920,00"),
    ("Ручка шариковая синяя", "100", "шт", "12,90", "1 290,00"),
    ("Тетрадь общая 96 листов", "30", "шт", "64,00", "1 920,00"),
    ("Короб архивный", "8", "шт", "156,00", "1 248,00"),
    ("Степлер настольный № 24", "4", "шт", "412,00", "1 648,00"),
    ("Скобы для степлера", "10", "уп", "35,00", "350,00"),
    ("Конверт почтовый C4", "250", "шт", "6,20", "1 550,00"),
    ("Маркер текстовый жёлтый", "24", "шт", "48,00", "1 152,00"),
]


@dataclass
class DrawnCell:
    row: int
    col: int
    text: str
    row_span: int = 1
    col_span: int = 1


@dataclass
class LayoutPage:
    """A generated page and what is on it: ``text`` in reading order (lines joined by newlines), the cells
    of its tables as drawn (one list per table, row by row)."""

    image: Image.Image
    text: str
    tables: list[list[DrawnCell]] = field(default_factory=list)


def wrap(text: str, face: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels in ``face``."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if current and face.getlength(candidate) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def columns_page(
    sections: Sequence[tuple[int, Sequence[str]]],
    *,
    size: tuple[int, int] = A4_150DPI,
    font_size: int = 22,
    font_name: str = "DejaVuSans.ttf",
    gutter: int = 50,
    margin: int = 90,
    line_gap: float = 1.45,
    title: str | None = None,
) -> LayoutPage:
    """A page of ``sections`` top to bottom, each ``(columns, paragraphs)``: the paragraphs wrapped to the
    column width and flowed down the first column, then the next (columns balanced in height). ``title`` is
    a full-width heading in a larger bold face. The expected text is the title, then each section's columns
    one after the other, as a reader reads it."""
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    face = font(font_size, font_name)
    step = int(font_size * line_gap)
    y = margin
    expected: list[str] = []
    if title:
        heading = font(int(font_size * 1.5), font_name.replace(".ttf", "-Bold.ttf"))
        for line in wrap(title, heading, size[0] - 2 * margin):
            draw.text((margin, y), line, font=heading, fill="black")
            expected.append(line)
            y += int(font_size * 1.5 * line_gap)
        y += step
    for columns, paragraphs in sections:
        width = (size[0] - 2 * margin - (columns - 1) * gutter) // columns
        lines: list[str | None] = []  # None: the gap between paragraphs
        for paragraph in paragraphs:
            if lines:
                lines.append(None)
            lines.extend(wrap(paragraph, face, width))
        per_column = -(-len(lines) // columns)
        bottom = y
        for column in range(columns):
            chunk = lines[column * per_column : (column + 1) * per_column]
            while chunk and chunk[0] is None:  # a column does not start with a paragraph gap
                chunk.pop(0)
            x, line_y = margin + column * (width + gutter), y
            for line in chunk:
                if line is not None:
                    draw.text((x, line_y), line, font=face, fill="black")
                    expected.append(line)
                line_y += step if line is not None else step // 2
            bottom = max(bottom, line_y)
        y = bottom + step
    if y > size[1]:
        raise ValueError(f"the sections need {y} px, the page has {size[1]}")
    return LayoutPage(page, "\n".join(expected))


def table_page(
    rows: Sequence[Sequence[str | None]],
    *,
    spans: dict[tuple[int, int], tuple[int, int]] | None = None,
    size: tuple[int, int] = A4_150DPI,
    font_size: int = 20,
    font_name: str = "DejaVuSans.ttf",
    origin: tuple[int, int] = (90, 260),
    padding: int = 10,
    rule: int = 2,
    before: Sequence[str] = (),
    after: Sequence[str] = (),
    bold_header: bool = True,
) -> LayoutPage:
    """A ruled table of ``rows`` (``None``: the cell is covered by a merged cell) with text lines above and
    below it. ``spans`` maps ``(row, col)`` to ``(row_span, col_span)`` for merged cells. Column widths fit the
    widest text; cells are left-aligned, text vertically centred. The expected text: lines before, the table
    row by row (cells separated by spaces), lines after."""
    spans = spans or {}
    face = font(font_size, font_name)
    bold = font(font_size, font_name.replace(".ttf", "-Bold.ttf")) if bold_header else face
    ncols = max(len(row) for row in rows)
    row_height = int(font_size * 1.3) + 2 * padding
    widths = [0] * ncols
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            if text is not None and spans.get((r, c), (1, 1))[1] == 1:
                widths[c] = max(widths[c], int((bold if r == 0 else face).getlength(text)) + 2 * padding)
    widths = [max(w, 3 * padding) for w in widths]
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    step = int(font_size * 1.5)
    y = origin[1] - step * len(before) - step
    for line in before:
        draw.text((origin[0], y), line, font=face, fill="black")
        y += step
    x0, y0 = origin
    xs = [x0]
    for w in widths:
        xs.append(xs[-1] + w)
    ys = [y0 + r * row_height for r in range(len(rows) + 1)]
    if xs[-1] > size[0] - 20:
        raise ValueError(f"the table is {xs[-1] - x0} px wide, the page {size[0]}")
    cells: list[DrawnCell] = []
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            if text is None:
                continue
            rs, cs = spans.get((r, c), (1, 1))
            box = (xs[c], ys[r], xs[c + cs], ys[r + rs])
            draw.rectangle(box, outline="black", width=rule)
            face_used = bold if r == 0 else face
            text_y = (box[1] + box[3]) // 2 - int(font_size * 0.6)
            draw.text((box[0] + padding, text_y), text, font=face_used, fill="black")
            cells.append(DrawnCell(r, c, text, rs, cs))
    expected = list(before)
    for row in rows:
        expected.append(" ".join(text for text in row if text))
    y = ys[-1] + step
    for line in after:
        draw.text((origin[0], y), line, font=face, fill="black")
        y += step
    expected += list(after)
    return LayoutPage(page, "\n".join(expected), [cells])


def invoice_rows(count: int, seed: int = 0) -> list[list[str | None]]:
    """A header and ``count`` numbered invoice rows (shuffled by ``seed``)."""
    items = list(INVOICE_ITEMS)
    random.Random(seed).shuffle(items)
    rows: list[list[str | None]] = [list(INVOICE_HEADER)]
    for number, item in enumerate(items[:count], start=1):
        rows.append([str(number), *item])
    return rows


def lookalike_page(
    lines: Sequence[str] = RUSSIAN_LOOKALIKE_LINES, font_size: int = 26, font_name: str = "DejaVuSans.ttf"
) -> LayoutPage:
    """Russian lines with look-alike-prone words and Latin terms, one per line."""
    face = font(font_size, font_name)
    page = Image.new("RGB", A4_150DPI, "white")
    draw = ImageDraw.Draw(page)
    for row, line in enumerate(lines):
        draw.text((100, 120 + row * int(font_size * 2.2)), line, font=face, fill="black")
    return LayoutPage(page, "\n".join(lines))


def prose(pool: Sequence[str], count: int, seed: int) -> list[str]:
    """``count`` paragraphs of two or three sentences from ``pool``, in an order that depends on ``seed``."""
    sentences = list(pool)
    random.Random(seed).shuffle(sentences)
    paragraphs = []
    for index in range(count):
        take = 2 + (index + seed) % 2
        chosen = [sentences[(index * 3 + k) % len(sentences)] for k in range(take)]
        paragraphs.append(" ".join(chosen))
    return paragraphs
