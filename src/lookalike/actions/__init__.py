"""Acting on a report: plan file operations, apply them journaled, undo them."""
