import Testing
@testable import ReplicaObjectStore

@Suite(.timeLimit(.minutes(1)))
struct ObjectBucketTests {
    @Test func conditionsCompareByValue() {
        #expect(PutCondition.ifMatch("a") != PutCondition.ifMatch("b"))
    }
}
