"""Bridges to engines that run promptclf past one process (Ray Data). Each imports its engine lazily."""
