#include "ferry.h"
int cmd_compare (int argc, char **argv) { print_message ("compare", "not yet"); return 1; }
