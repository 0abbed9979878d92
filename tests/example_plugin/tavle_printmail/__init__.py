"""A Tavle channel plugin: documents as paper letters through a print-and-post service."""
