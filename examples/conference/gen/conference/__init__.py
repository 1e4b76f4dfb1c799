"""Generated code: run generate.sh."""
