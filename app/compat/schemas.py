"""Request and response models of the PaddleX serving API for the PaddleOCR-VL pipeline (PaddleX 3.3).

Field names are PaddleX's (camelCase) so that existing clients work unchanged. Unknown request fields
are ignored, as PaddleX does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat

# Bounds on the options (they are accepted and ignored, but never unbounded); the JSON body's own limits
# (nesting, element count, number size) are applied before the model sees it (app.api.body).
ShortText = Annotated[str, Field(max_length=128)]
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]


class LayoutParsingRequest(BaseModel):
    """``POST /layout-parsing`` body. Options the configured engine cannot apply are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    file: str = Field(description="the document as base64, or an http(s) URL to fetch it from")
    fileType: Literal[0, 1] | None = Field(
        None, description="0 = PDF, 1 = image; null = detect from the bytes (this server always checks the bytes)"
    )
    useDocOrientationClassify: bool | None = None
    useDocUnwarping: bool | None = None
    useLayoutDetection: bool | None = None
    useChartRecognition: bool | None = None
    layoutThreshold: FiniteFloat | dict[str, Any] | None = None
    layoutNms: bool | None = None
    layoutUnclipRatio: FiniteFloat | tuple[FiniteFloat, FiniteFloat] | dict[str, Any] | None = None
    layoutMergeBboxesMode: ShortText | dict[str, Any] | None = None
    promptLabel: ShortText | None = None
    formatBlockContent: bool | None = None
    repetitionPenalty: FiniteFloat | None = None
    temperature: FiniteFloat | None = None
    topP: FiniteFloat | None = None
    minPixels: Count | None = None
    maxPixels: Count | None = None
    maxNewTokens: Count | None = None
    mergeLayoutBlocks: bool | None = None
    markdownIgnoreLabels: list[ShortText] | None = Field(None, max_length=64)
    prettifyMarkdown: bool = True
    showFormulaNumber: bool = False
    visualize: bool | None = Field(
        None, description="return the page image and the layout/reading-order image (default: true, as PaddleX)"
    )


class MarkdownData(BaseModel):
    text: str
    images: dict[str, str] = Field(default_factory=dict, description="relative path -> base64 JPEG")


class LayoutParsingPage(BaseModel):
    """One page: PaddleX's pruned pipeline result, its Markdown and (with ``visualize``) images."""

    prunedResult: dict[str, Any]
    markdown: MarkdownData
    outputImages: dict[str, str] | None = None
    inputImage: str | None = None


class ImageInfo(BaseModel):
    width: int
    height: int
    type: Literal["image"] = "image"


class PdfPageInfo(BaseModel):
    width: int
    height: int


class PdfInfo(BaseModel):
    numPages: int
    pages: list[PdfPageInfo]
    type: Literal["pdf"] = "pdf"


class LayoutParsingResult(BaseModel):
    layoutParsingResults: list[LayoutParsingPage]
    dataInfo: ImageInfo | PdfInfo


class LayoutParsingResponse(BaseModel):
    """The success envelope. Keys that are None (``outputImages``, ``inputImage``) are left out, as PaddleX does."""

    logId: str
    errorCode: Literal[0] = 0
    errorMsg: Literal["Success"] = "Success"
    result: LayoutParsingResult


class PaddleXError(BaseModel):
    """The error envelope: ``errorCode`` is the HTTP status."""

    logId: str
    errorCode: int
    errorMsg: str
