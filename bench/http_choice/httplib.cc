#include <httplib.h>
int main() { httplib::Server s;
  s.Get("/v2/health/ready", [](const httplib::Request&, httplib::Response& r) { r.set_content("{\"ready\":true}", "application/json"); });
  s.Post("/v2/models/m/infer", [](const httplib::Request& q, httplib::Response& r) { r.set_content("{\"bytes\":" + std::to_string(q.body.size()) + "}", "application/json"); });
  s.listen("127.0.0.1", 18002); }
