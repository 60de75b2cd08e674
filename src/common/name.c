/* The name rule of src/common/name.h, written once: the architecture parser (model names), the
 * operating points (point names, second models) and the daemon's model repository (folder
 * names, API paths) all call it. */
#include "name.h"

static bool name_ok(const char *s, size_t n, size_t max, bool dot_first)
{
	if (n == 0 || n > max || (!dot_first && s[0] == '.'))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

bool cigt__model_name_ok(const char *s, size_t n)
{
	return name_ok(s, n, CIGT__MODEL_NAME_LEN, true);
}

bool cigt__model_file_name_ok(const char *s, size_t n)
{
	return name_ok(s, n, CIGT__MODEL_NAME_LEN, false);
}

bool cigt__point_name_ok(const char *s, size_t n)
{
	return name_ok(s, n, CIGT__POINT_NAME_LEN, false);
}
