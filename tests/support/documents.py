"""Test documents generated in code: pages of known text rendered with the DejaVu fonts."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont
from rapidfuzz.distance import Levenshtein

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
A4_150DPI = (1240, 1754)

ENGLISH_LINES = [
    "Quarterly report of the northern warehouse",
    "The quick brown fox jumps over the lazy dog.",
    "Invoice 2024-117 was paid on the third of May.",
    "Total amount due: 1,234.56 EUR including tax.",
    "Please keep this document for your records.",
    "Shipping address: 42 Harbour Street, Dublin",
    "Contact our support team for any questions.",
    "Delivery expected within five working days.",
]

RUSSIAN_LINES = [
    "Настоящий договор заключён между сторонами в городе Москве.",
    "Исполнитель обязуется выполнить работы в срок до 15 марта.",
    "Стоимость услуг составляет 125 000 рублей, включая НДС 20%.",
    "Заказчик вправе проверять ход и качество выполняемых работ.",
    "Оплата производится безналичным переводом на расчётный счёт.",
    "В случае просрочки начисляется пеня в размере 0,1% в день.",
    "Съешь же ещё этих мягких французских булок да выпей чаю.",
    "Широкая электрификация южных губерний даст мощный толчок",
    "подъёму сельского хозяйства и развитию промышленности.",
    "Приложение № 1 является неотъемлемой частью договора.",
    "Адрес: 119991, г. Москва, Ленинский проспект, д. 32.",
    "Гарантийный срок на результаты работ составляет 12 месяцев.",
]

MIXED_LINES = [
    "Сервер OCR принимает файлы PDF, PNG и JPEG через REST API.",
    "Invoice 2024-117 от 12.03.2024, итого: 4 560,00 EUR.",
    "The quick brown fox jumps over the lazy dog.",
    "Поставщик: ООО «Ромашка», e-mail: info@romashka.ru",
    "Meeting notes: обсудили deadline и план релиза v2.0.",
    "Hello, world! Привет, мир! Проверка смешанного текста.",
    "Total amount due: 1 250,50 USD (одна тысяча двести).",
    "Contact support at help@example.com для вопросов.",
    "Страница 1 из 1. Page 1 of 1. Конец документа.",
    "Windows, Linux и macOS поддерживаются одинаково хорошо.",
]

#: Russian technical text with the Latin terms, codes and names such documents carry (a man page in Russian).
RUSSIAN_TECH_LINES = [
    "Команда umask задаёт маску прав доступа для новых файлов.",
    "Строки в кодировке ISO 8859-5 преобразуются в UTF-8 при чтении.",
    "Библиотека glibc версии 2.36 входит в состав Debian 12.",
    "При ошибке функция возвращает значение -1 и устанавливает errno.",
    "Переменная окружения PATH содержит список каталогов для поиска.",
    "Подробности смотрите в руководствах chmod(1), chown(2) и stat(2).",
    "Сервер nginx принимает соединения на порту 443 по протоколу HTTPS.",
    "Файл /etc/fstab описывает разделы, которые монтирует команда mount.",
    "Параметр --verbose включает подробный вывод в стандартный поток.",
    "Ядро Linux 6.1 поддерживает файловые системы ext4, XFS и Btrfs.",
]


def font(size: int = 28, name: str = "DejaVuSans.ttf") -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_DIR / name), size)


def render_page(
    lines: Sequence[str], size: tuple[int, int] = A4_150DPI, font_size: int = 28, top: int = 120, gap: float = 2.0
) -> Image.Image:
    """A white page with one text line per entry, left-aligned, top to bottom."""
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    face = font(font_size)
    y = top
    for line in lines:
        draw.text((110, y), line, font=face, fill="black")
        y += int(font_size * gap)
    return page


def blurred(image: Image.Image, radius: float = 1.0) -> Image.Image:
    """A slightly out-of-focus scan."""
    return image.filter(ImageFilter.GaussianBlur(radius))


def rotated(image: Image.Image, degrees: float = 1.5) -> Image.Image:
    """A page fed into the scanner slightly askew."""
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor="white")


def jpeg_artefacts(image: Image.Image, quality: int = 30) -> Image.Image:
    """The page after a strong JPEG compression."""
    return Image.open(io.BytesIO(image_bytes(image, "JPEG", quality=quality))).convert("RGB")


def page_lines(number: int) -> list[str]:
    """Distinct known text for page ``number`` of a generated multi-page document."""
    return [f"Page {number} of the generated test document", *ENGLISH_LINES[(number % 3) : (number % 3) + 4]]


def image_bytes(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def pdf_bytes(pages: Sequence[Image.Image], dpi: int = 150) -> bytes:
    """A scanned-style PDF: each page is one (JPEG-compressed) image at ``dpi``."""
    buffer = io.BytesIO()
    pages[0].save(buffer, format="PDF", save_all=True, append_images=list(pages[1:]), resolution=float(dpi))
    return buffer.getvalue()


def text_pdf(page_count: int, lines: Callable[[int], Sequence[str]] | None = None) -> bytes:
    """A digital (vector text) A4 PDF of ``page_count`` pages; page n shows ``lines(n)`` (:func:`page_lines`)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4", unit="pt")
    pdf.set_auto_page_break(False)
    pdf.add_font("DejaVu", fname=str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.set_font("DejaVu", size=14)
    for number in range(1, page_count + 1):
        pdf.add_page()
        for row, line in enumerate((lines or page_lines)(number)):
            pdf.text(54, 72 + row * 32, line)
    return bytes(pdf.output())


def normalise(text: str) -> str:
    return " ".join(text.split())


def cer(expected: str, actual: str) -> float:
    """Character error rate of ``actual`` against ``expected`` on whitespace-normalised text."""
    reference = normalise(expected)
    return Levenshtein.distance(reference, normalise(actual)) / max(1, len(reference))


def photographed(image: Image.Image, seed: int = 7) -> Image.Image:
    """The page as a phone photo of it: seen slightly from the side (perspective, 2 degrees askew), lit
    unevenly on yellowish paper, with sensor noise, a little out of focus and JPEG-compressed."""
    import numpy as np

    width, height = image.size
    dx, dy = width * 0.03, height * 0.02
    # Corners of the source quadrilateral (top-left, bottom-left, bottom-right, top-right) -> the whole frame.
    quad = (dx, dy, 0.0, height - dy * 0.5, width - dx * 0.3, height, width, dy * 0.4)
    warped = image.transform(image.size, Image.Transform.QUAD, quad, Image.Resampling.BICUBIC, fillcolor="white")
    warped = warped.rotate(2.0, resample=Image.Resampling.BICUBIC, fillcolor="white")
    pixels = np.asarray(warped, dtype=np.float32) / 255.0
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 1.0 - 0.35 * ((xs / width) * 0.6 + (ys / height) * 0.4)  # darker towards one corner
    paper = np.array([0.96, 0.92, 0.84], dtype=np.float32)
    photo = pixels * paper * light[..., None]
    photo += np.random.default_rng(seed).normal(0.0, 0.035, photo.shape).astype(np.float32)
    result = Image.fromarray((np.clip(photo, 0.0, 1.0) * 255).astype(np.uint8), "RGB")
    return jpeg_artefacts(blurred(result, 0.8), quality=45)
