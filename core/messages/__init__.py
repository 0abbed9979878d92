"""Messages between school and home: sending to persons and groups, replies in threads,
attachments, questions, read receipts, the subscription feed and the statistics."""
