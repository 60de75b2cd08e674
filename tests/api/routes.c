/* Prints cigtd's route table (src/server/route.c) as "METHOD TEMPLATE" lines, one per method
 * a path takes (POST rows: POST; the others: GET and HEAD), for tests/api/test_routes.py to
 * compare with proto/http-api.yaml. */
#include <stdio.h>

#include "srv.h"

int main(void)
{
	for (size_t i = 0; i < srv_nroutes; i++) {
		if (srv_routes[i].post)
			printf("POST %s\n", srv_routes[i].path);
		else
			printf("GET %s\nHEAD %s\n", srv_routes[i].path, srv_routes[i].path);
	}
	return 0;
}
