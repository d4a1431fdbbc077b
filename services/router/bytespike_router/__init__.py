"""router: loads the catalog and pushes route tables to every edge."""
