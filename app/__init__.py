"""paddleocr-vl-service: a document OCR service for Cloud.ru ML Inference."""

__version__ = "0.1.0"
