"""The task as data: the Task definition, prompts, output schemas, examples and prompt artifacts."""
