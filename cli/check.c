#include "ferry.h"
int cmd_check (int argc, char **argv) { print_message ("check", "not yet"); return 1; }
