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
#include <vector>

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

// The sum of the samples of `name` whose labels include every `k="v"` pair
// of `labels` (as written in the text format, comma-separated), as PromQL's
// sum(name{labels}) would give: Metric(text, "mcdrop_requests_total",
// "code=\"OK\",model=\"concrete\"") counts every protocol and API. With
// `labels` empty, the one sample without labels. NAN when none matches.
inline double Metric(const std::string& text, const std::string& name,
                     const std::string& labels) {
  if (labels.empty()) {
    const std::string key = "\n" + name + " ";
    const size_t at = text.find(key);
    return at == std::string::npos ? NAN
                                   : std::stod(text.substr(at + key.size()));
  }
  std::vector<std::string> wanted;
  for (size_t from = 0; from <= labels.size();) {
    size_t comma = labels.find("\",", from);
    const size_t end = comma == std::string::npos ? labels.size() : comma + 1;
    wanted.push_back(labels.substr(from, end - from));
    from = end + 1;
  }
  double sum = 0;
  bool found = false;
  const std::string prefix = "\n" + name + "{";
  for (size_t at = text.find(prefix); at != std::string::npos;
       at = text.find(prefix, at + 1)) {
    const size_t open = at + prefix.size() - 1, close = text.find("} ", open);
    if (close == std::string::npos) break;
    const std::string set = "," + text.substr(open + 1, close - open - 1) + ",";
    bool all = true;
    for (const std::string& w : wanted)
      all &= set.find("," + w + ",") != std::string::npos;
    if (!all) continue;
    sum += std::stod(text.substr(close + 2));
    found = true;
  }
  return found ? sum : NAN;
}

}  // namespace mcdrop::testing

#endif  // MCDROP_TESTS_TESTING_METRICS_H_
