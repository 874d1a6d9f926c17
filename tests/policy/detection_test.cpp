// Hysteresis: `detect_samples` consecutive samples raise a need, as many
// clear it, and anything shorter is a spike.
#include <boost/test/unit_test.hpp>

#include "policy/detection.hpp"

using memlend::policy::Hysteresis;
using Change = Hysteresis::Change;

BOOST_AUTO_TEST_SUITE(detection)

BOOST_AUTO_TEST_CASE(raised_after_exactly_n_consecutive_samples) {
  Hysteresis h(3);
  BOOST_TEST((h.sample(true) == Change::none));
  BOOST_TEST((h.sample(true) == Change::none));
  BOOST_TEST(!h.active());
  BOOST_TEST(h.streak() == 2);
  BOOST_TEST((h.sample(true) == Change::raised));
  BOOST_TEST(h.active());
  BOOST_TEST(h.streak() == 0);
  BOOST_TEST((h.sample(true) == Change::none));  // raised once, not again
}

BOOST_AUTO_TEST_CASE(a_spike_shorter_than_n_changes_nothing) {
  Hysteresis h(3);
  for (int round = 0; round < 5; ++round) {
    BOOST_TEST((h.sample(true) == Change::none));
    BOOST_TEST((h.sample(true) == Change::none));
    BOOST_TEST((h.sample(false) == Change::none));  // the streak starts over
    BOOST_TEST(h.streak() == 0);
  }
  BOOST_TEST(!h.active());
}

BOOST_AUTO_TEST_CASE(cleared_only_after_n_samples_without) {
  Hysteresis h(2);
  h.sample(true);
  BOOST_TEST((h.sample(true) == Change::raised));
  BOOST_TEST((h.sample(false) == Change::none));
  BOOST_TEST((h.sample(true) == Change::none));  // a dip of one sample keeps the need
  BOOST_TEST(h.active());
  BOOST_TEST((h.sample(false) == Change::none));
  BOOST_TEST((h.sample(false) == Change::cleared));
  BOOST_TEST(!h.active());
}

BOOST_AUTO_TEST_CASE(one_sample_reacts_at_once_and_less_than_one_means_one) {
  for (std::int64_t n : {1, 0, -5}) {
    Hysteresis h(n);
    BOOST_TEST((h.sample(true) == Change::raised), n);
    BOOST_TEST((h.sample(false) == Change::cleared), n);
  }
}

BOOST_AUTO_TEST_CASE(restore_resumes_a_streak) {
  Hysteresis h(3);
  h.restore(false, 2);
  BOOST_TEST((h.sample(true) == Change::raised));
  Hysteresis g(3);
  g.restore(true, 2);
  BOOST_TEST((g.sample(false) == Change::cleared));
}

BOOST_AUTO_TEST_SUITE_END()
