/** A worker module that dies before serving: tests/pool.test.ts's crash loop. */
throw new Error("this worker cannot start");
