"""Jobs: every document is processed as a persisted job, page by page (sync /ocr waits for one)."""
