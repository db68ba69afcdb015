"""The command line: builds Settings and Secrets, starts and supervises the daemons."""
