"""The archive queue: enqueueing documents, batches to the archive plugin, folders and
receipts."""
