/* glibc has no xlocale.h; PostgreSQL builds that expect it get locale.h */
#include <locale.h>
