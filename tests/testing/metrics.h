// Copyright 2026 The mcdrop Authors.
//
// Reading a server's /metrics in tests.

#ifndef MCDROP_TESTS_TESTING_METRICS_H_
#define MCDROP_TESTS_TESTING_METRICS_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <string>

namespace mcdrop::testing {

// GET /metrics over plain HTTP/1.0.
inline std::string Scrape(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  (void)!write(fd, req.data(), req.size());
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  close(fd);
  return out;
}

// The value of one sample line, e.g. Metric(text, "mcdrop_requests_total",
// "code=\"OK\",model=\"concrete\"").
inline double Metric(const std::string& text, const std::string& name,
                     const std::string& labels) {
  const std::string key =
      labels.empty() ? "\n" + name + " " : name + "{" + labels + "} ";
  const size_t at = text.find(key);
  if (at == std::string::npos) return NAN;
  return std::stod(text.substr(at + key.size()));
}

}  // namespace mcdrop::testing

#endif  // MCDROP_TESTS_TESTING_METRICS_H_
