"""The files people keep, made from a finished result: a searchable PDF, a Word document and an Excel workbook.

- :mod:`~app.exports.formats`: the formats (file name, media type) and the download's ``Content-Disposition``.
- :mod:`~app.layout.html_tables`: the VL engine's HTML tables as rows and cells (pure).
- :mod:`~app.exports.text_layer`: where each recognised word or line stands on its page (pure).
- :mod:`~app.exports.pdf`: the document's own pages with an invisible text layer (pikepdf, fpdf2, img2pdf).
- :mod:`~app.exports.docx` and :mod:`~app.exports.xlsx`: Word and Excel from the result's structure.
- :mod:`~app.exports.files`: when a job's files are rendered and where they are kept (beside ``result.json``).

Importing this package is cheap: the PDF, Word and Excel libraries are imported when a file is rendered.
"""
