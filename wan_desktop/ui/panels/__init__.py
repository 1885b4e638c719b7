"""The window's pages: Generate, Queue, Models, Gallery, System, Settings."""
