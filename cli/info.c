#include "ferry.h"
int cmd_info (int argc, char **argv) { print_message ("info", "not yet"); return 1; }
